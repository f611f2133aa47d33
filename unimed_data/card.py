"""The dataset card (OUT/README.md): what is in the shards, where it came from, under which licence."""

from __future__ import annotations

from dataclasses import dataclass

from unimed_data.schema import SPLITS
from unimed_data.stats import reference_rows
from unimed_data.tables import atomic_write_text
from unimed_data.workspace import Workspace

# What `txt` holds per shard.txt_format, and what that means for open_clip.
_TXT = {
    "plain": ("its primary caption", ""),
    "unimed": (
        "its captions joined by its UniMed part's separator tag, the form UniMed-CLIP's training code "
        "splits and picks from; a part without a tag holds its primary caption",
        " These `txt` members are for UniMed-CLIP's own training code: plain open_clip would read the"
        " joined captions as one text.",
    ),
}


@dataclass(frozen=True)
class SourceInfo:
    slug: str
    name: str
    modality: str
    license: str
    homepage: str | None = None
    citation: str | None = None


def render_card(stats: dict, sources: list[SourceInfo], shard_prefix: str) -> str:
    totals = stats["totals"]
    txt, txt_note = _TXT[stats["config"].get("txt_format", "plain")]
    lines = [
        "# Medical image-text shards built with unimed-data",
        "",
        f"{totals['samples']} image-text pairs from {len(sources)} source(s) in WebDataset format. "
        f"Each sample holds `jpg` (the image), `txt` ({txt})"
        " and `json` (all captions, labels, report, modality, dataset, caption source, licence, split,"
        " width, height).",
        "",
        "## Splits",
        "",
        "| split | samples | shards | files |",
        "| --- | ---: | ---: | --- |",
    ]
    lines += _split_rows(stats, shard_prefix)
    lines += [
        "",
        "## Sources and licences",
        "",
        "Every sample keeps its source licence in `json.license`; respect each source's terms.",
        "",
        "| dataset | modality | samples | licence | homepage |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for src in sources:
        samples = stats["datasets"].get(src.slug, {}).get("samples", 0)
        lines.append(f"| {src.name} | {src.modality} | {samples} | {src.license} | {src.homepage or ''} |")
    if "reference" in stats:
        lines += _reference_section(stats["reference"])
    citations = [src for src in sources if src.citation]
    if citations:
        lines += ["", "## Citations", ""]
        lines += [f"- {src.name}: {src.citation.strip()}" for src in citations]
    lines += _dedupe_section(stats)
    lines += [
        "",
        "## Accounting",
        "",
        f"Inputs {totals['inputs']} = samples {totals['samples']} + errors {totals['errors']}"
        f" + filtered {totals['filtered']} + duplicates {totals.get('duplicates', 0)}"
        f" + contaminated {totals.get('contaminated', 0)}"
        f" ({'balanced' if totals['balanced'] else 'NOT balanced'}). "
        "Errors by stage: "
        + (", ".join(f"{k} {v}" for k, v in stats["errors_by_stage"].items()) or "none")
        + ". Each error is a row of `errors.parquet` with its source path and reason; filtered items"
        " (left out by a manifest rule or the minimum image side) are counted, not errors.",
        "",
        "## Loading",
        "",
        "```python",
        "import webdataset as wds",
        f'ds = wds.WebDataset("{_pattern(stats, shard_prefix)}").decode("pil").to_tuple("jpg", "txt", "json")',
        "```",
        "",
        f"open_clip: `--train-data '{_pattern(stats, shard_prefix)}' --dataset-type webdataset` (sample counts come from"
        " `sizes.json` beside the shards)." + txt_note,
        "",
    ]
    return "\n".join(lines)


def _dedupe_section(stats: dict) -> list[str]:
    """Duplicates and contamination removed per source, and the evaluation sets the corpus was
    checked against (a paper can cite this section)."""
    lines = ["", "## Duplicates and benchmark contamination", ""]
    if not stats.get("dedupe", {}).get("enabled", True):
        return [
            *lines,
            "Deduplication was turned off (`--no-dedupe`): neither duplicates nor contamination were checked.",
        ]
    lines += [
        "| source | duplicates removed | captions merged | evaluation images removed |",
        "| --- | --- | --- | --- |",
        *(
            f"| {slug} | {info.get('duplicates', 0)} | {info.get('captions_merged', 0)} | "
            f"{info.get('contaminated', 0)} |"
            for slug, info in sorted(stats["datasets"].items())
        ),
        "",
    ]
    protected = stats.get("protected") or {}
    checked = {name: info for name, info in protected.items() if info["images"]}
    if not checked:
        return [*lines, "No evaluation set was protected (`--protect`): contamination was not checked."]
    lines += [
        "Clean against these evaluation sets (every pretraining image that matched one of their images by "
        "file path, pixels or perceptual hash was removed; `contamination.parquet` lists them):",
        "",
    ]
    for name, info in sorted(checked.items()):
        unread = f", {info['unreadable']} unreadable (checked by path only)" if info["unreadable"] else ""
        lines.append(
            f"- {name}: {info['images']} images{unread}; {info['removed']} pretraining items removed"
        )
    return lines


def _split_rows(stats: dict, shard_prefix: str) -> list[str]:
    """The splits table's rows, one per built split in SPLITS order, each with its shard brace pattern."""
    rows = []
    for split in SPLITS:
        if split in stats["splits"]:
            info = stats["splits"][split]
            files = f"`{split}/{shard_prefix}-{{000000..{info['shards'] - 1:06d}}}.tar`"
            rows.append(f"| {split} | {info['samples']} | {info['shards']} | {files} |")
    return rows


def _reference_section(reference: dict) -> list[str]:
    header, rows = reference_rows(reference)
    lines = [
        "",
        f"## Samples against {reference['name']}",
        "",
        f"Samples per part (all splits) beside {reference['name']}'s own count for it.",
        "",
        _markdown_row(header),
        "| --- | ---: | ---: | ---: | --- |",
    ]
    return lines + [_markdown_row(row) for row in rows]


def _markdown_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _pattern(stats: dict, prefix: str) -> str:
    """The brace pattern of all shards of the first split present (train when there is one)."""
    split = next((s for s in SPLITS if s in stats["splits"]), "train")
    last = stats["splits"].get(split, {"shards": 1})["shards"] - 1
    return f"{split}/{prefix}-{{000000..{last:06d}}}.tar"


def write_card(ws: Workspace, stats: dict, sources: list[SourceInfo], shard_prefix: str) -> None:
    atomic_write_text(ws.card, render_card(stats, sources, shard_prefix))
