import importlib.util
import io

import pytest
from rich.console import Console

from unimed_data.manifest import bundled_manifest_paths, load_manifest
from unimed_data.sources import render_sources, source_rows

NEW_LAYOUTS = {"rocov2", "pmc_oa", "quilt", "llava_med", "mimic_cxr", "openi"}
UNIMED_MODALITIES = {"xray", "ct", "mri", "ultrasound", "pathology", "fundus"}
CONFIRMED_EVAL_SETS = 21  # UniMed-CLIP's eval catalog minus the skipped imagenet, radimagenet, SICAPv2


def _layout_type(path) -> str:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))["layout"]["type"]


def _registered(layout_type: str) -> bool:
    """The layout's module exists and the manifest model accepts its type (it is registered)."""
    if importlib.util.find_spec(f"unimed_data.layouts.{layout_type}") is None:
        return False
    from unimed_data.layouts import LAYOUT_TYPES

    return layout_type in LAYOUT_TYPES


def _loadable():
    """Manifests whose layout type is implemented; the others are skipped until it is registered."""
    return [p for p in bundled_manifest_paths() if _registered(_layout_type(p))]


@pytest.mark.parametrize("path", bundled_manifest_paths(), ids=lambda p: p.name)
def test_every_bundled_manifest_validates(path):
    layout_type = _layout_type(path)
    if layout_type in NEW_LAYOUTS and not _registered(layout_type):
        pytest.skip(f"layout {layout_type!r} not registered yet")
    manifest = load_manifest(path)
    assert path.name == f"{manifest.name}.yaml"
    assert not any("sha256" in entry.model_dump(exclude_none=True) for entry in manifest.download)


def test_names_are_unique():
    import yaml

    names = [yaml.safe_load(p.read_text(encoding="utf-8"))["name"] for p in bundled_manifest_paths()]
    assert len(names) == len(set(names))


def test_every_unimed_modality_has_a_pretraining_source():
    import yaml

    data = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in bundled_manifest_paths()]
    pretrain = {d["modality"] for d in data if d.get("role", "pretrain") == "pretrain"}
    assert pretrain >= UNIMED_MODALITIES


def test_eval_sets_have_a_fixed_test_split_and_cover_six_modalities():
    import yaml

    evals = [
        d
        for d in (yaml.safe_load(p.read_text(encoding="utf-8")) for p in bundled_manifest_paths())
        if d.get("role") == "eval"
    ]
    assert len(evals) >= CONFIRMED_EVAL_SETS
    for data in evals:
        assert data["split"] == {"by": "fixed", "split": "test"}, data["name"]
    assert {d["modality"] for d in evals} == UNIMED_MODALITIES


def test_source_rows_for_a_known_manifest():
    rows = {row["name"]: row for row in source_rows(_loadable())}
    assert rows["nih-chestxray14"] == {
        "name": "nih-chestxray14",
        "modality": "xray",
        "role": "pretrain",
        "access": "open",
        "license": rows["nih-chestxray14"]["license"],
        "homepage": rows["nih-chestxray14"]["homepage"],
        "expected_images": 112120,
        "fetchers": ["kaggle", "manual"],
    }
    assert rows["pcam"]["role"] == "eval"


def test_render_sources_sorts_by_role_then_modality_then_name():
    rows = source_rows(_loadable())
    out = io.StringIO()
    render_sources(rows, Console(file=out, width=400))
    text = out.getvalue()
    # eval before pretrain; within a role fundus before xray; names in order
    assert text.index("odir-5k") < text.index("chexpert-5x200") < text.index("eyepacs")
    assert text.index("eyepacs") < text.index("chexpert-v1.0-small")


def _rendered(rows, width: int, **options) -> str:
    out = io.StringIO()
    render_sources(rows, Console(file=out, width=width), **options)
    return out.getvalue()


def test_the_default_table_is_one_line_per_source_at_80_columns():
    rows = source_rows(_loadable())
    lines = _rendered(rows, 80).splitlines()
    assert len(lines) <= len(rows) + 6  # title, borders and header
    assert all(len(line) <= 80 for line in lines) and "…" not in "".join(lines)
    assert all(any(row["name"] in line for line in lines) for row in rows)


def test_long_gives_each_source_its_full_licence_homepage_and_fetchers():
    rows = source_rows(_loadable())
    text = _rendered(rows, 80, long=True)
    assert "…" not in text
    for row in rows:
        assert f"licence: {row['license']}" in text and f"homepage: {row['homepage'] or '-'}" in text


def test_markup_like_text_in_a_licence_is_printed_as_is():
    row = {**source_rows(_loadable())[0], "license": "see [bold]terms[/bold]"}
    assert "see [bold]terms[/bold]" in _rendered([row], 400, long=True)


def test_a_narrow_terminal_gets_the_whole_table_for_it_to_wrap_not_a_cut_one():
    console = Console(width=40, force_terminal=True, record=True, file=io.StringIO())
    rows = source_rows()
    render_sources(rows, console)
    text = console.export_text()
    assert "…" not in text
    for row in rows:
        assert row["name"] in text and row["modality"] in text
