"""`python -m unimed_train.eval`: several models x several eval sets -> one report folder.

```
python -m unimed_train.eval --model ViT-B-16 --pretrained openai \
    --pretrained runs/unimed/checkpoints/latest.pt --data EVAL1 --data EVAL2 --out report/
```
`--model`/`--pretrained`/`--label` (and `--text-encoder`, `--model-cfg`, `--context-length`) may be
repeated: the i-th of each belongs to the i-th model, and a single value applies to every model. A
checkpoint of our trainer needs no `--model` (its saved config rebuilds the architecture); give
`--model -` to leave it out for one model of several. `--models models.yaml` lists models instead:
``[{label, model, pretrained, text-encoder, model-cfg, context-length}, ...]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from unimed_train.config import PRECISIONS
from unimed_train.eval.encode import ModelSpec
from unimed_train.eval.report import write_report
from unimed_train.eval.runner import TASKS, run

SPEC_FIELDS = ("label", "model", "pretrained", "text_encoder", "model_cfg", "context_length")


def _csv_ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"k-shot values must be >= 1: {text}")
    return values


def _csv_tasks(text: str) -> list[str]:
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise argparse.ArgumentTypeError(f"tasks must be among {','.join(TASKS)}; got {text!r}")
    return tasks


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unimed_train.eval", description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=[], help="open_clip name or JSON config ('-': none)")
    p.add_argument("--pretrained", action="append", default=[], help="tag, hf-hub:, local-dir: or checkpoint")
    p.add_argument("--label", action="append", default=[], help="display name per model")
    p.add_argument("--text-encoder", action="append", default=[], help="HF text tower name or local folder")
    p.add_argument("--model-cfg", action="append", default=[], help="JSON model config file")
    p.add_argument("--context-length", action="append", default=[], type=int)
    p.add_argument("--models", type=Path, help="YAML list of models (instead of --model/--pretrained)")
    p.add_argument("--data", action="append", required=True, help="eval folder (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--task", type=_csv_tasks, default=list(TASKS), help="comma list of " + ",".join(TASKS))
    p.add_argument("--k-shot", type=_csv_ints, default=[], help="few-shot probes, e.g. 1,4,16")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--seed", type=int, default=0, help="few-shot sampling and probe validation split")
    return p


def _default_label(spec: dict) -> str:
    pretrained = spec.get("pretrained")
    if pretrained and Path(str(pretrained)).is_file():
        path = Path(str(pretrained))
        run_dir = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
        pretrained = f"{run_dir}/{path.stem}" if run_dir else path.stem
    parts = [str(p) for p in (spec.get("model"), pretrained) if p]
    return ":".join(parts) or "model"


def specs_from_args(args: argparse.Namespace) -> list[ModelSpec]:
    """ModelSpecs from the YAML list or the repeated flags; labels made unique (`#2`, `#3`...)."""
    if args.models:
        raw = yaml.safe_load(args.models.read_text(encoding="utf-8")) or []
        if not isinstance(raw, list):
            raise SystemExit(f"{args.models}: expected a YAML list of models")
        rows = []
        for item in raw:
            row = {k.replace("-", "_"): v for k, v in dict(item).items()}
            row["label"] = row.get("label") or row.pop("name", None)
            unknown = set(row) - set(SPEC_FIELDS) - {"name"}
            if unknown:
                raise SystemExit(f"{args.models}: unknown model field(s) {sorted(unknown)}")
            rows.append(row)
    else:
        lists = {f: getattr(args, f) for f in SPEC_FIELDS}
        n = max(len(v) for v in lists.values())
        if n == 0:
            raise SystemExit("give --model and/or --pretrained, or --models models.yaml")
        for name, values in lists.items():
            if len(values) not in (0, 1, n):
                raise SystemExit(f"--{name.replace('_', '-')} given {len(values)} times for {n} models")
        rows = [
            {f: (v[i] if len(v) == n else v[0]) if v else None for f, v in lists.items()} for i in range(n)
        ]
        for row in rows:
            row["model"] = None if row["model"] == "-" else row["model"]
    specs, seen = [], {}
    for row in rows:
        if not row.get("model") and not row.get("pretrained"):
            raise SystemExit(f"a model needs model or pretrained: {row}")
        label = str(row.get("label") or _default_label(row))
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}#{seen[label]}"
        cl = row.get("context_length")
        specs.append(
            ModelSpec(
                label=label,
                model=row.get("model"),
                pretrained=None if row.get("pretrained") is None else str(row["pretrained"]),
                text_encoder=row.get("text_encoder"),
                model_cfg=row.get("model_cfg"),
                context_length=int(cl) if cl else None,
            )
        )
    return specs


def main(argv: list[str] | None = None) -> int:
    """Run and write the report; the exit status is 1 when any entry is an error."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    specs = specs_from_args(args)
    entries = run(
        specs,
        args.data,
        tasks=args.task,
        k_shots=args.k_shot,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
    )
    for path in write_report(entries, args.out):
        logging.info("wrote %s", path)
    errors = [e for e in entries if e["status"] == "error"]
    for e in errors:
        logging.error("%s / %s / %s: %s", e["model"], e["dataset"], e["task"], e["error"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
