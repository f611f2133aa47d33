"""WebDataset loading for training: weighted multi-source specs, per-epoch caption sampling,
deterministic rank/worker sharding, the objectives' sample members and resumable positions.

Shard specs (`spec`)
--------------------
``make_loader(spec, ...)`` takes one or more sources joined with ``::``; each is a brace pattern
(``braceexpand`` syntax, as open_clip's ``--train-data``) optionally followed by ``@weight``::

    /data/unimed/train/unimed-{000000..000099}.tar
    a/train-{000000..000009}.tar@2::b/train-{000000..000003}.tar@1

A missing weight is 1. Weights only matter in resampled mode, where each shard draw first picks a
source with probability ``weight / sum(weights)`` and then one of that source's shards uniformly.
Without resampling every shard of every source is read once per pass. Sample counts come from
``sizes.json`` in each source's folder (as ``unimed-data shard`` writes); without it,
``epoch_samples`` must be given.

Samples and batches (`samples`)
-------------------------------
Batches are dicts: ``image`` ``[B, 3, H, W]``, ``text`` ``[B, ctx]``, ``key`` ``list[str]``, plus
what the objective's members (``members=``, from `Objective.loader_members`) add: SLIP's
``view1``/``view2`` (`objectives.slip`), distillation's ``teacher_img``/``teacher_txt``/
``has_teacher``/``teacher`` (`objectives.distill`, one shape for any number of teachers).

Epochs, ranks and workers (`sharding`)
--------------------------------------
Epoch mode: ranks and workers read disjoint shards (or, with fewer shards than ranks, disjoint
samples of shared shards) and every rank yields exactly ``num_batches`` full batches:
``ceil(num_samples / (batch_size * world_size))``, with ``num_samples = epoch_samples or <sizes.json
total>``; a few samples repeat at the end of an epoch on ranks whose part is smaller. Resampled
mode: an epoch is ``epoch_samples // (batch_size * world_size)`` batches per rank. The whole
pipeline is deterministic for given ``(spec, seed, epoch, rank, world_size, workers, batch_size)``.

Resume (`loader`)
-----------------
``Loader.state()`` returns ``{"epoch": e, "batches_done": n}`` (a batch counts as soon as it is
yielded, so save the state after the optimiser step). ``Loader.load_state(state)`` (or
``set_epoch(e); skip(n)``) makes the next iteration start at that epoch and drop its first ``n``
batches, by reading them: exact, because the pipeline is deterministic.
"""

from unimed_train.data.loader import Loader, make_loader
from unimed_train.data.samples import caption_index
from unimed_train.data.spec import Source, check_shards, dataset_size, parse_spec

__all__ = [
    "Loader",
    "Source",
    "caption_index",
    "check_shards",
    "dataset_size",
    "make_loader",
    "parse_spec",
]
