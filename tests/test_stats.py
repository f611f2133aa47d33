"""stats.json, the stats tables and the dataset card: a build's samples per part beside a reference
corpus's counts (UniMed's), and nothing new when there is no reference."""

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from tests.test_stage_shard import make_captioned
from unimed_data.card import SourceInfo, render_card
from unimed_data.stages.order import STAGE_NAMES
from unimed_data.stages.shard import shard_datasets
from unimed_data.stages.shard_options import ShardOptions
from unimed_data.stats import against_reference, compute_stats, load_stats, render_stats, write_stats
from unimed_data.workspace import Workspace

REASON = "files absent under /data/mimic-cxr-jpg: download MIMIC-CXR-JPG 2.1.0 from PhysioNet"
REFERENCE = {
    "name": "UniMed",
    "parts": {
        "unimed-chexpert": {"expected": 12, "missing": None},
        "unimed-openi": {"expected": 8, "missing": None},
        "unimed-mimic-cxr": {"expected": 20, "missing": REASON},
        "unimed-empty": {"expected": 0, "missing": None},
    },
}
BEFORE_REFERENCES = {  # the keys of stats.json before references existed (and dedupe's two)
    "llm",
    "totals",
    "protected",
    "dedupe",
    "splits",
    "datasets",
    "modalities",
    "caption_sources",
    "errors_by_stage",
    "config",
}


@pytest.fixture
def built(tmp_path: Path) -> tuple[Workspace, list[str]]:
    """Two parts ingested, captioned and sharded (9 and 10 samples); MIMIC-CXR was not built."""
    ws = Workspace(tmp_path / "out")
    slugs = ["unimed-chexpert", "unimed-openi"]
    make_captioned(ws, slugs[0], 9)
    make_captioned(ws, slugs[1], 10)
    for slug in slugs:  # what ingest would have left, for the counts
        shutil.copy(ws.captioned(slug), ws.records(slug))
    shard_datasets(ws, slugs, ShardOptions(shard_size=5), workers=1)
    return ws, slugs


def stats_of(built, reference=None) -> dict:
    ws, slugs = built
    return compute_stats(ws, slugs, stages=STAGE_NAMES, filtered={}, config={"seed": 0}, reference=reference)


def test_reference_counts_put_each_parts_samples_beside_its_expected_count(built):
    reference = stats_of(built, REFERENCE)["reference"]
    assert reference["name"] == "UniMed"
    assert reference["parts"] == {
        "unimed-chexpert": {"expected": 12, "samples": 9, "ratio": 0.75, "missing": None},
        "unimed-openi": {"expected": 8, "samples": 10, "ratio": 1.25, "missing": None},
        "unimed-mimic-cxr": {"expected": 20, "samples": 0, "ratio": 0.0, "missing": REASON},
        "unimed-empty": {"expected": 0, "samples": 0, "ratio": None, "missing": None},
    }
    assert (reference["samples_total"], reference["expected_total"], reference["ratio"]) == (19, 40, 0.475)


def test_ratios_keep_four_decimals():
    reference = {"name": "R", "parts": {"a": {"expected": 3, "missing": None}}}
    counts = against_reference(reference, {"a": {"samples": 2}})
    assert counts["parts"]["a"]["ratio"] == 0.6667 and counts["ratio"] == 0.6667


def test_without_a_reference_stats_json_is_what_it_was(built):
    ws, _ = built
    with_reference = stats_of(built, REFERENCE)
    without = stats_of(built)
    assert set(without) == BEFORE_REFERENCES
    assert {k: v for k, v in with_reference.items() if k != "reference"} == without
    write_stats(ws, without)
    assert ws.stats.read_text() == json.dumps(without, indent=2, sort_keys=True)


def render(stats: dict, width: int = 40) -> str:
    console = Console(width=width, force_terminal=True, record=True, file=io.StringIO())
    render_stats(stats, console)
    return console.export_text()


def reference_rows_shown(text: str) -> dict[str, list[str]]:
    """The cells of each row of the printed "Samples against UniMed" table, by first cell."""
    section = text[text.index("Samples against UniMed") : text.index("Samples per modality")]
    cells = [line.replace("│", " ").replace("┃", " ").split() for line in section.splitlines()]
    return {row[0]: row[1:] for row in cells if row and row[0].startswith(("unimed-", "total"))}


def test_the_stats_table_shows_parts_ratios_missing_reasons_and_the_total_at_any_width(built):
    ws, _ = built
    write_stats(ws, stats_of(built, REFERENCE))
    for width in (40, 200):
        text = render(load_stats(ws.out), width)
        assert "UniMed's count" in text
        assert reference_rows_shown(text) == {
            "unimed-chexpert": ["9", "12", "75.00%"],
            "unimed-empty": ["0", "0", "n/a"],
            "unimed-mimic-cxr": ["0", "20", "0.00%", "not", "built:", *REASON.split()],
            "unimed-openi": ["10", "8", "125.00%"],
            "total": ["19", "40", "47.50%"],
        }


def test_the_stats_tables_have_no_reference_table_without_a_reference(built):
    assert "Samples against" not in render(stats_of(built), 200)


def test_the_card_has_the_same_table_as_markdown(built):
    sources = [SourceInfo("unimed-chexpert", "unimed-chexpert", "xray", "CC-BY-4.0")]
    card = render_card(stats_of(built, REFERENCE), sources, "unimed")
    assert "## Samples against UniMed" in card
    assert "| part | samples | UniMed's count | ratio | note |" in card
    assert "| unimed-chexpert | 9 | 12 | 75.00% |  |" in card
    assert f"| unimed-mimic-cxr | 0 | 20 | 0.00% | not built: {REASON} |" in card
    assert "| unimed-empty | 0 | 0 | n/a |  |" in card
    assert card.index("| unimed-mimic-cxr |") < card.index("| total | 19 | 40 | 47.50% |  |")
    assert "Samples against" not in render_card(stats_of(built), sources, "unimed")


def test_the_card_says_what_txt_holds_in_each_format(built):
    sources = [SourceInfo("unimed-chexpert", "unimed-chexpert", "xray", "CC-BY-4.0")]
    stats = stats_of(built)
    assert "`txt` (its primary caption)" in render_card(stats, sources, "unimed")
    unimed = render_card({**stats, "config": {"txt_format": "unimed"}}, sources, "unimed")
    assert (
        "separator tag" in unimed and "plain open_clip would read the joined captions as one text" in unimed
    )
