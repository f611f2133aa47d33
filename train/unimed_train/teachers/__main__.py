"""`python -m unimed_train.teachers --teachers teachers.yaml --shards PATTERN --out OUT` (or under
`torchrun --nproc_per_node=N`): MMKD-CLIP's teacher features for the `distill` loss."""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from unimed_train.cli import Parser, expected_failures
from unimed_train.teachers.extract import Options, extract

INTERRUPTED = "stopped by Ctrl-C; the finished shards are kept: rerun the same command to go on"


def parser() -> Parser:
    p = Parser(prog="python -m unimed_train.teachers", description=__doc__.splitlines()[0])
    p.add_argument(
        "--teachers", type=Path, required=True, help="YAML list of {name, model, pretrained, modalities}"
    )
    p.add_argument("--shards", required=True, help="brace pattern of local shards in one folder")
    p.add_argument("--out", type=Path, required=True, help="folder of the output shards")
    p.add_argument("--batch-size", type=int, default=64, help="samples per teacher forward (default: 64)")
    p.add_argument("--workers", type=int, default=4, help="threads decoding and preprocessing (default: 4)")
    p.add_argument(
        "--force", action="store_true", help="write into a non-empty folder that is not ours (files kept)"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    try:
        with expected_failures(INTERRUPTED):
            args = parser().parse_args(argv)
            extract(Options(**vars(args)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
