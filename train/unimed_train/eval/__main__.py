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
`--prompts FILE` replaces every set's prompts (a .py file of dict literals, read with `ast`, or JSON);
`--protocol unimed` scores zero-shot the way UniMed-CLIP's 21-set table does.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from unimed_data.outputs import claim_output, settle_output
from unimed_train.cli import Parser, UsageError, expected_failures
from unimed_train.config import PRECISIONS, check_model_files
from unimed_train.eval import PROTOCOLS, TASKS

if TYPE_CHECKING:
    from unimed_train.eval.encode import ModelSpec
    from unimed_train.eval.prompt_files import PromptFile

SPEC_FIELDS = ("label", "model", "pretrained", "text_encoder", "model_cfg", "context_length")
WRITES = ("results.json", "results.md", "plots")  # everything the report puts in --out
PER_MODEL = "once per model, or once for all"
INTERRUPTED = "stopped by Ctrl-C; the report is written only at the end: rerun the same command"


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


def parser() -> Parser:
    """The options; heavy imports wait until they are parsed, so `--help` is instant."""
    p = Parser(prog="python -m unimed_train.eval", description=__doc__.split("\n")[0])
    add = p.add_argument
    for flag, kind, what, default in (
        ("--model", str, "open_clip name or JSON config, '-': none", "from the checkpoint"),
        ("--pretrained", str, "tag, hf-hub:, local-dir: or checkpoint file", "none"),
        ("--label", str, "display name", "model:pretrained"),
        ("--text-encoder", str, "HF text tower name or local folder", "none"),
        ("--model-cfg", str, "JSON model config file", "none"),
        ("--context-length", int, "text tokens", "the model's"),
    ):
        add(flag, action="append", default=[], type=kind, help=f"{what}; {PER_MODEL} (default: {default})")
    add("--models", type=Path, help="YAML list of models instead of the flags above (default: none)")
    add(
        "--data",
        action="append",
        required=True,
        help="eval set folder or URL (s3://, gs://, hf://, https://), or a folder of sets (its set "
        "subfolders, sorted; remote where the store lists them); repeatable (required)",
    )
    add("--out", type=Path, required=True, help="report folder (required)")
    add(
        "--force",
        action="store_true",
        help="write into a non-empty folder that is not a report; its other files are kept (default: off)",
    )
    add(
        "--task",
        type=_csv_tasks,
        help=f"comma list of {','.join(TASKS)} (default: all; zeroshot under --protocol)",
    )
    add(
        "--prompts",
        type=Path,
        metavar="FILE",
        help="per-class prompts replacing each set's own: a .py file of dict literals such as "
        "UniMed-CLIP's constants.py (the set's info.json prompt_dict names its dict) or JSON "
        "{set: {class: [prompts]}} (default: the sets' prompts.json or templates)",
    )
    add(
        "--protocol",
        choices=PROTOCOLS,
        help="score as a published table does: unimed = UniMed-CLIP's zero-shot table, AUROC or "
        "top-1 per set as its info.json declares, averaged per modality (default: none)",
    )
    add("--k-shot", type=_csv_ints, default=[], help="few-shot probes, e.g. 1,4,16 (default: none)")
    add("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
    add("--workers", type=int, default=2, help="data loader processes (default: %(default)s)")
    add("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    add("--precision", choices=PRECISIONS, default="fp32", help="autocast precision (default: %(default)s)")
    add(
        "--seed",
        type=int,
        default=0,
        help="few-shot sampling and probe validation split (default: %(default)s)",
    )
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
    from unimed_train.eval.encode import ModelSpec

    if args.models:
        try:
            raw = yaml.safe_load(args.models.read_text(encoding="utf-8")) or []
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"{args.models}: cannot read the models ({' '.join(str(exc).split())})") from exc
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise UsageError(f"{args.models}: expected a YAML list of models ({{label, model, ...}})")
        rows = []
        for item in raw:
            row = {k.replace("-", "_"): v for k, v in item.items()}
            row["label"] = row.get("label") or row.pop("name", None)
            unknown = set(row) - set(SPEC_FIELDS) - {"name"}
            if unknown:
                raise UsageError(f"{args.models}: unknown model field(s) {sorted(unknown)}")
            rows.append(row)
    else:
        lists = {f: getattr(args, f) for f in SPEC_FIELDS}
        n = max(len(v) for v in lists.values())
        if n == 0:
            raise UsageError("give --model and/or --pretrained, or --models models.yaml")
        for name, values in lists.items():
            if len(values) not in (0, 1, n):
                raise UsageError(f"--{name.replace('_', '-')} given {len(values)} times for {n} models")
        rows = [
            {f: (v[i] if len(v) == n else v[0]) if v else None for f, v in lists.items()} for i in range(n)
        ]
        for row in rows:
            row["model"] = None if row["model"] == "-" else row["model"]
    specs, seen = [], {}
    for row in rows:
        if not row.get("model") and not row.get("pretrained"):
            raise UsageError(f"a model needs model or pretrained: {row}")
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
    """Run and write the report; the exit status is 1 when any entry is an error, 2 when the
    options, a model's checkpoint file, an eval set or the output folder are unusable."""
    with expected_failures(INTERRUPTED):
        args = parser().parse_args(argv)
        specs = specs_from_args(args)
        tasks = _tasks(args)
        data = _expand(args.data)
        prompts = _check_inputs(specs, data, args.prompts, args.protocol)
        claim_output(args.out, "eval", WRITES, force=args.force)
        status = _evaluate(specs, args, data, tasks, prompts)
        settle_output(args.out)
        return status


def _tasks(args: argparse.Namespace) -> list[str]:
    """The tasks to run; a protocol's table is zero-shot only, so other tasks are refused there."""
    if args.protocol is None:
        return args.task or list(TASKS)
    if (args.task and args.task != ["zeroshot"]) or args.k_shot:
        raise UsageError(
            f"--protocol {args.protocol} scores zero-shot only (its table has no probe or retrieval); "
            "leave out --task and --k-shot, or run those tasks without --protocol"
        )
    return ["zeroshot"]


def _expand(data: list[str]) -> list[str]:
    from unimed_train.eval.evalsets import expand_folders

    return [str(p) for p in expand_folders(data)]


def _check_inputs(
    specs: list[ModelSpec], data: list[str], prompts_path: Path | None, protocol: str | None
) -> PromptFile | None:
    """Missing checkpoints, model configs, unreadable eval sets, a prompt file that does not cover
    a set and a set the protocol cannot score are found before hours of encoding."""
    from unimed_train.eval.encode import check_checkpoint
    from unimed_train.eval.evalsets import EvalSetError
    from unimed_train.eval.prompt_files import PromptFileError, read_prompt_file
    from unimed_train.eval.protocols import ProtocolError
    from unimed_train.eval.runner import prepare_evalset

    for spec in specs:
        check_checkpoint(spec.pretrained)
        check_model_files(spec.model_cfg, spec.text_encoder)
    try:
        prompts = read_prompt_file(prompts_path) if prompts_path else None
        for folder in data:
            prepare_evalset(folder, prompts, protocol)
    except EvalSetError as exc:
        raise UsageError(f"eval set {exc}") from exc
    except (PromptFileError, ProtocolError) as exc:
        raise UsageError(str(exc)) from exc
    return prompts


def _evaluate(
    specs: list[ModelSpec],
    args: argparse.Namespace,
    data: list[str],
    tasks: list[str],
    prompts: PromptFile | None,
) -> int:
    from unimed_train.eval.report import write_report
    from unimed_train.eval.runner import run

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    entries = run(
        specs,
        data,
        tasks=tasks,
        k_shots=args.k_shot,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        prompts=prompts,
        protocol=args.protocol,
    )
    for path in write_report(entries, args.out):
        logging.info("wrote %s", path)
    errors = [e for e in entries if e["status"] == "error"]
    for e in errors:
        logging.error("%s / %s / %s: %s", e["model"], e["dataset"], e["task"], e["error"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
