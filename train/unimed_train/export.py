"""Export a model as an open_clip model folder: `open_clip_config.json` + `open_clip_model.safetensors`
(+ the tokenizer's files where the text tower is a Hugging Face one, as open_clip reads a `local-dir:`
HF tokenizer from the folder itself).

That folder is what open_clip loads as `local-dir:PATH` and, pushed to the Hugging Face hub, as
`hf-hub:org/name`, so a model trained here can be shared and evaluated by tools that know nothing of
our checkpoints (CLIP_benchmark, open_clip itself). Weights only: no optimizer or RNG state.

    python -m unimed_train.export --checkpoint runs/x/checkpoints/latest.pt --out models/x
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from unimed_data.outputs import claim_output, settle_output
from unimed_train.cli import Parser, UsageError, expected_failures

if TYPE_CHECKING:
    from torch import nn

WEIGHTS = "open_clip_model.safetensors"
CONFIG = "open_clip_config.json"
# What `save_pretrained` writes for the tokenizers of Hugging Face text towers (BERT-style, BPE, SentencePiece).
TOKENIZER_FILES = (
    *("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"),
    *("vocab.txt", "vocab.json", "merges.txt", "chat_template.jinja"),
    *("spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "spm.model"),
)
INTERRUPTED = "stopped by Ctrl-C; each file is renamed into place only when complete: rerun the same command"


def save_local_dir(model: nn.Module, model_cfg: dict, path: str | os.PathLike) -> str:
    """Write `model` (an open_clip CLIP with architecture `model_cfg`) to `path`; returns the
    `local-dir:` name that loads it. Files are written to temporary names and renamed."""
    from safetensors.torch import save_file

    tokenizer = _hf_tokenizer(model_cfg)  # first: a tokenizer that cannot load leaves nothing written
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    tmp = path / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600, unlike every other output
    os.replace(tmp, path / WEIGHTS)
    visual = model.visual
    preprocess = {"mean": list(visual.image_mean), "std": list(visual.image_std)}
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    tmp = path / f".{CONFIG}.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path / CONFIG)
    if tokenizer is not None:
        _save_tokenizer(tokenizer, path)
    return f"local-dir:{path}"


def _hf_tokenizer(model_cfg: dict):
    """The text tower's Hugging Face tokenizer, which open_clip reads from a `local-dir:` folder
    itself (not from `hf_tokenizer_name`); None for open_clip's own text towers."""
    name = (model_cfg.get("text_cfg") or {}).get("hf_tokenizer_name")
    if not name:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise UsageError(f"tokenizer {name}: cannot load it to save beside the weights ({exc})") from None


def _save_tokenizer(tokenizer, path: Path) -> None:
    """The tokenizer's files renamed into `path`: only the names an export owns (TOKENIZER_FILES)."""
    with tempfile.TemporaryDirectory(dir=path, prefix=".tokenizer-") as scratch:
        tokenizer.save_pretrained(scratch)
        for written in sorted(Path(scratch).iterdir()):
            if written.name in TOKENIZER_FILES:
                os.replace(written, path / written.name)


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> str:
    """One of our trainer's checkpoints (its saved architecture rebuilds the model) -> `out`, a
    folder of ours (see `unimed_data.outputs`)."""
    from unimed_train.eval.encode import ModelSpec, load_model, saved_config

    if not os.path.isfile(checkpoint):
        raise UsageError(f"{checkpoint}: no such checkpoint file")
    if saved_config(checkpoint) is None:
        raise UsageError(f"{checkpoint}: not a checkpoint of unimed_train.main (no saved config)")
    built = load_model(ModelSpec("export", pretrained=str(checkpoint)))
    has_tokenizer = bool(((built.model_cfg or {}).get("text_cfg") or {}).get("hf_tokenizer_name"))
    writes = (CONFIG, WEIGHTS, *(TOKENIZER_FILES if has_tokenizer else ()))
    claim_output(Path(out), "export", writes, force=force)  # once loading worked
    name = save_local_dir(built.model, built.model_cfg, out)
    settle_output(Path(out))
    return name


def parser() -> Parser:
    p = Parser(prog="python -m unimed_train.export", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint our trainer wrote (required)")
    p.add_argument("--out", required=True, help="the model folder to write (required)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder that is not an export; its other files are kept (default: off)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    with expected_failures(INTERRUPTED):
        args = parser().parse_args(argv)
        print(export_checkpoint(args.checkpoint, args.out, force=args.force))


if __name__ == "__main__":
    main(sys.argv[1:])
