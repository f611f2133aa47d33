"""The dataset card (OUT/README.md): what is in the shards, where it came from, under which licence."""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

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

# What a CLIP-style image-text corpus is for, in the Hub's task vocabulary.
TASK_CATEGORIES = ("zero-shot-image-classification", "image-to-text", "feature-extraction")
# Hub licence ids a manifest's licence may name exactly (case, spaces and `_` aside), and spellings
# of them that manifests use.
HUB_LICENSES = {
    *("apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "odbl", "odc-by", "pddl"),
    *("cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0"),
    *("cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0"),
    *("cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-permissive-2.0", "cdla-sharing-1.0"),
}
LICENSE_SPELLINGS = {"cc0": "cc0-1.0", "apache-license-2.0": "apache-2.0", "mit-license": "mit"}
# The Hub's size buckets: (upper bound, label); above the last bound, n>1T.
SIZE_BUCKETS = (
    *((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M")),
    *((10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B")),
    *((10**11, "10B<n<100B"), (10**12, "100B<n<1T")),
)


@dataclass(frozen=True)
class SourceInfo:
    slug: str
    name: str
    modality: str
    license: str
    homepage: str | None = None
    citation: str | None = None


def render_card(stats: dict, sources: list[SourceInfo], shard_prefix: str) -> str:
    return "\n".join(
        [
            *hub_header(stats, sources, shard_prefix),
            *_contents_section(stats, sources, shard_prefix),
            *_sources_section(stats, sources),
            *_dedupe_section(stats),
            *_accounting_section(stats["totals"], stats["errors_by_stage"]),
            *_loading_section(stats, shard_prefix),
        ]
    )


def _contents_section(stats: dict, sources: list[SourceInfo], shard_prefix: str) -> list[str]:
    """The title, what a sample holds and the splits table."""
    txt = _TXT[stats["config"].get("txt_format", "plain")][0]
    return [
        "# Medical image-text shards built with unimed-data",
        "",
        f"{stats['totals']['samples']} image-text pairs from {len(sources)} source(s) in WebDataset format. "
        f"Each sample holds `jpg` (the image), `txt` ({txt})"
        " and `json` (all captions, labels, report, modality, dataset, caption source, licence, split,"
        " width, height).",
        "",
        "## Splits",
        "",
        "| split | samples | shards | files |",
        "| --- | ---: | ---: | --- |",
        *_split_rows(stats, shard_prefix),
    ]


def _sources_section(stats: dict, sources: list[SourceInfo]) -> list[str]:
    """Each source's licence and homepage, the counts against a reference corpus, the citations."""
    lines = [
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
    return lines


def _accounting_section(totals: dict, errors_by_stage: dict) -> list[str]:
    return [
        "",
        "## Accounting",
        "",
        f"Inputs {totals['inputs']} = samples {totals['samples']} + errors {totals['errors']}"
        f" + filtered {totals['filtered']} + duplicates {totals.get('duplicates', 0)}"
        f" + contaminated {totals.get('contaminated', 0)}"
        f" ({'balanced' if totals['balanced'] else 'NOT balanced'}). "
        "Errors by stage: "
        + (", ".join(f"{k} {v}" for k, v in errors_by_stage.items()) or "none")
        + ". Each error is a row of `errors.parquet` with its source path and reason; filtered items"
        " (left out by a manifest rule or the minimum image side) are counted, not errors.",
    ]


def _loading_section(stats: dict, shard_prefix: str) -> list[str]:
    """How webdataset, `datasets` (locally or from the Hub) and open_clip read the shards."""
    pattern = _pattern(stats, shard_prefix)
    txt_note = _TXT[stats["config"].get("txt_format", "plain")][1]
    return [
        "",
        "## Loading",
        "",
        "```python",
        "import webdataset as wds",
        f'ds = wds.WebDataset("{pattern}").decode("pil").to_tuple("jpg", "txt", "json")',
        "```",
        "",
        f'Hugging Face `datasets`: `load_dataset("webdataset", data_files={{"train": "train/{shard_prefix}-*.tar"}},'
        ' split="train")` in this folder, or `load_dataset("ORG/NAME", split="train")` once published to'
        " the Hub (the header above names the splits).",
        "",
        f"open_clip: `--train-data '{pattern}' --dataset-type webdataset` (sample counts come from"
        " `sizes.json` beside the shards)." + txt_note,
        "",
    ]


def hub_header(stats: dict, sources: list[SourceInfo], shard_prefix: str) -> list[str]:
    """The YAML front matter the Hugging Face Hub reads from a dataset card: licence, tasks, tags,
    size bucket and one `default` config whose splits are the shard files, so that the Hub's viewer
    and `datasets.load_dataset` find them. Key order and values depend on the build only."""
    header = _license_fields(sources)
    header["task_categories"] = list(TASK_CATEGORIES)
    modalities = sorted({_tag(src.modality) for src in sources} - {"", "other"})
    header["tags"] = ["medical", "webdataset", "image-text", *modalities]
    header["size_categories"] = [size_category(stats["totals"]["samples"])]
    splits = [split for split in SPLITS if split in stats["splits"]]
    header["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": split, "path": f"{split}/{shard_prefix}-*.tar"} for split in splits],
        }
    ]
    return ["---", *_yaml(header).splitlines(), "---", ""]


def card_in_folder(card: str, folder: str) -> str:
    """The card with its configs' data_files under `folder/`: the Hub resolves them from the repo
    root, so this is the card of a build published into that folder of a repo. A card without a
    readable front matter is returned as it is."""
    if not card.startswith("---\n") or card.count("---\n") < 2:
        return card
    _, front, body = card.split("---\n", 2)
    try:
        header = yaml.safe_load(front)
    except yaml.YAMLError:
        return card
    if not isinstance(header, dict):
        return card
    for config in header.get("configs") or []:
        if isinstance(config, dict) and "data_files" in config:
            config["data_files"] = _under(folder, config["data_files"])
    return f"---\n{_yaml(header)}---\n{body}"


def _under(folder: str, data_files):
    """A config's data_files (a path, a list, `{split, path}` entries) moved under `folder/`."""
    if isinstance(data_files, str):
        return f"{folder}/{data_files}"
    if isinstance(data_files, list):
        return [_under(folder, entry) for entry in data_files]
    if isinstance(data_files, dict) and "path" in data_files:
        return {**data_files, "path": _under(folder, data_files["path"])}
    return data_files


def _yaml(header: dict) -> str:
    """The front matter's text: keys in the order given, so that it depends on the build only."""
    return yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000)


def hub_license(text: str) -> str | None:
    """The Hub licence id a manifest's licence text is, or None when it is anything more or else
    (a licence with conditions or doubts attached is not claimed to be the plain licence)."""
    slug = re.sub(r"[\s_]+", "-", text.strip().lower())
    slug = LICENSE_SPELLINGS.get(slug, slug)
    return slug if slug in HUB_LICENSES else None


def _license_fields(sources: list[SourceInfo]) -> dict:
    """One Hub id when every source has the same one; otherwise `other`, pointing at the card's
    table of each source's licence."""
    ids = {hub_license(src.license) for src in sources}
    if len(ids) == 1 and None not in ids:
        return {"license": ids.pop()}
    return {"license": "other", "license_name": "per-source-licences", "license_link": "README.md"}


def size_category(samples: int) -> str:
    return next((label for bound, label in SIZE_BUCKETS if samples < bound), "n>1T")


def _tag(modality: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", modality.lower()).strip("-")


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
