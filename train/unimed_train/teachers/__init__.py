"""MMKD-CLIP teacher features: `python -m unimed_train.teachers` (see `__main__`).

`teachers.yaml` lists teachers as `{name, model, pretrained, modalities}`: any model the trainer
loads (an open_clip name with a tag, `hf-hub:`, `local-dir:`, or one of our checkpoints), each with
its own preprocessing and tokenizer (`config`, `models`). Every sample of every input shard is
written to a shard of the same name under OUT (`shards`) with its members, plus per teacher
`<teacher>.img.npy` (float16 `[D]`) and `<teacher>.txt.npy` (float16 `[n_captions, D]`, one row per
json `captions` entry, else one for `txt`), L2-normalised, and `available_teachers` in its json. A
teacher with `modalities` reads only samples whose json `modality` is listed.

Under torchrun rank r takes shards `[r::world]`; a shard that exists under OUT is finished and
skipped, so a rerun goes on where a stopped run left. A teacher failing on a sample (a corrupt image,
an error in its model, NaN features) is a row `{shard, key, teacher, reason}` of
`OUT/errors/<shard>.jsonl`; the sample keeps the other teachers. OUT also gets `teachers.json`
(each teacher's name, source, width and preprocessing; the trainer reads the widths from it) and
the input's `sizes.json` (`extract`).
"""
