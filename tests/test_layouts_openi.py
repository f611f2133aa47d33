"""Open-i (NLMCXR) XML reports: one item per parentImage, MeSH labels, report text, unsafe/bad XML."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimed_data.layouts import openi
from unimed_data.layouts.item import Filtered, Item, ItemError, LayoutError
from unimed_data.layouts.openi import OpenILayout

REPORT_1 = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="CXR1"/>
  <pmcId id="1"/>
  <docSource>CXR</docSource>
  <IUXRId id="1"/>
  <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
    <Article PubModel="Electronic">
      <Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">Positive TB test</AbstractText>
        <AbstractText Label="FINDINGS">The cardiac silhouette and mediastinum size are within normal
          limits. There is no pulmonary edema. There is no XXXX effusion.</AbstractText>
        <AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH>
    <major>normal</major>
  </MeSH>
  <parentImage id="CXR1_1_IM-0001-3001">
    <figureId>F1</figureId>
    <caption>Xray Chest PA and Lateral</caption>
    <panel type="single"><url>/hadoop/storage/radiology/extract/CXR1_1_IM-0001-3001.jpg</url></panel>
  </parentImage>
  <parentImage id="CXR1_1_IM-0001-4001">
    <figureId>F2</figureId>
    <caption>Xray Chest PA and Lateral</caption>
  </parentImage>
</eCitation>
"""

REPORT_2 = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <uId id="CXR2"/>
  <MedlineCitation><Article><Abstract>
    <AbstractText Label="INDICATION">XXXX-year-old male, chest pain.</AbstractText>
    <AbstractText Label="FINDINGS"/>
    <AbstractText Label="IMPRESSION">1. Mild cardiomegaly. 2. Calcified granuloma in the right upper lobe.</AbstractText>
  </Abstract></Article></MedlineCitation>
  <MeSH>
    <major>Cardiomegaly/mild</major>
    <major>Calcified Granuloma/lung/upper lobe/right</major>
    <major>Cardiomegaly/moderate</major>
    <minor>Opacity/lung/base</minor>
  </MeSH>
  <parentImage id="CXR2_IM-0652-1001"><caption>PA</caption></parentImage>
</eCitation>
"""

REPORT_3 = """<eCitation>
  <uId id="CXR3"/>
  <MedlineCitation><Article><Abstract>
    <AbstractText Label="COMPARISON">XXXX</AbstractText>
  </Abstract></Article></MedlineCitation>
  <MeSH><major>No Indexing</major></MeSH>
  <parentImage id="CXR3_IM-1384-1001"/>
  <parentImage id="../../etc/passwd"/>
</eCitation>
"""

NO_IMAGES = """<eCitation><uId id="CXR4"/><MeSH><major>normal</major></MeSH></eCitation>"""

MALFORMED = """<eCitation>
  <uId id="CXR5"/>
  <AbstractText Label="FINDINGS">Lungs are clear.
</eCitation>
"""

DOCTYPE = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
<eCitation><uId id="CXR6"/><parentImage id="CXR6_IM-0001-1001"/><x>&lol2;</x></eCitation>
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "ecgen-radiology"
    folder.mkdir()
    for name, text in {
        "1.xml": REPORT_1,
        "2.xml": REPORT_2,
        "3.xml": REPORT_3,
        "4.xml": NO_IMAGES,
        "5.xml": MALFORMED,
        "10.xml": DOCTYPE,
    }.items():
        (folder / name).write_text(text)
    (folder / "README.txt").write_text("not a report")
    return tmp_path


def layout(**options) -> OpenILayout:
    return OpenILayout.model_validate({"type": "openi", **options})


def test_items_per_parent_image(root):
    entries = list(openi.iter_items(layout(), root))
    items = [entry for entry in entries if isinstance(entry, Item)]
    assert [item.source_path for item in items] == [
        "NLMCXR_png/CXR1_1_IM-0001-3001.png",
        "NLMCXR_png/CXR1_1_IM-0001-4001.png",
        "NLMCXR_png/CXR2_IM-0652-1001.png",
        "NLMCXR_png/CXR3_IM-1384-1001.png",
    ]
    first, second, third, fourth = items
    assert first.item_id == first.source_path
    assert first.patient == second.patient == "CXR1"
    assert first.labels == second.labels == ["normal"]
    assert (
        first.report
        == second.report
        == (
            "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema. "
            "There is no effusion. Normal chest x."
        )
    )
    assert first.origin == "ecgen-radiology/1.xml: parentImage 1"
    assert third.labels == ["Cardiomegaly", "Calcified Granuloma"]
    assert third.report == "1. Mild cardiomegaly. 2. Calcified granuloma in the right upper lobe."
    assert fourth.labels == [] and fourth.report is None and fourth.patient == "CXR3"
    assert all(item.split is None and item.uncertain_labels == [] for item in items)


def test_errors_and_filtered(root):
    entries = list(openi.iter_items(layout(), root))
    errors = [entry.reason for entry in entries if isinstance(entry, ItemError)]
    assert errors[0].startswith("ecgen-radiology/3.xml: parentImage 2: bad id '../../etc/passwd'")
    assert errors[1] == "ecgen-radiology/5.xml:4:3: malformed XML (mismatched tag)"
    assert errors[2] == "ecgen-radiology/10.xml:2: <!DOCTYPE declarations are not accepted"
    assert len(errors) == 3
    filtered = [entry for entry in entries if isinstance(entry, Filtered)]
    assert [(entry.item_id, entry.reason) for entry in filtered] == [
        ("ecgen-radiology/4.xml", "report lists no parentImage")
    ]


def test_entity_without_doctype_is_rejected(root):
    (root / "ecgen-radiology" / "1.xml").write_text(
        '<eCitation><!ENTITY x "y"><parentImage id="A"/></eCitation>'
    )
    entries = list(openi.iter_items(layout(), root))
    assert isinstance(entries[0], ItemError)
    assert entries[0].reason == "ecgen-radiology/1.xml:1: <!ENTITY declarations are not accepted"


def test_options(root):
    items = [
        entry
        for entry in openi.iter_items(layout(labels_from_mesh=False, images_dir="png"), root)
        if isinstance(entry, Item)
    ]
    assert items[0].source_path == "png/CXR1_1_IM-0001-3001.png"
    assert all(item.labels == [] for item in items)
    (root / "reports").mkdir()
    (root / "ecgen-radiology").rename(root / "reports" / "ecgen-radiology")  # as NLMCXR_reports.tgz unpacks
    assert len([e for e in openi.iter_items(layout(reports_dir="reports"), root) if isinstance(e, Item)]) == 4
    assert [path.name for path in openi.annotation_files(layout(reports_dir="reports"), root)] == [
        "1.xml",
        "2.xml",
        "3.xml",
        "4.xml",
        "5.xml",
        "10.xml",
    ]


def test_missing_folder_is_a_layout_error(tmp_path):
    with pytest.raises(LayoutError, match="ecgen-radiology: report folder not found"):
        list(openi.iter_items(layout(), tmp_path))
    (tmp_path / "ecgen-radiology").mkdir()
    with pytest.raises(LayoutError, match=r"no \.xml reports"):
        list(openi.iter_items(layout(), tmp_path))
    assert openi.annotation_files(layout(), tmp_path / "nowhere") == [
        tmp_path / "nowhere" / "ecgen-radiology"
    ]


def test_the_open_i_eval_view_reads_the_source_folder_and_splits_per_report():
    from unimed_data.manifest import find_manifest, load_manifest
    from unimed_data.splits import assign_split

    view, source = (load_manifest(find_manifest(name)) for name in ("openi-nlmcxr-eval", "openi-nlmcxr"))
    assert view.root == source.name and view.role == "eval" and view.layout == source.layout
    assert view.split.fractions["test"] > 0
    splits = {
        assign_split(
            view.split, item_id=f"images/CXR{n}_{image}.png", patient=f"CXR{n}", source_split=None, seed=0
        )
        for n in range(1, 40)
        for image in (1, 2)
    }
    assert splits == {"train", "val", "test"}
    for n in range(1, 40):  # both images of a report land in one split
        first, second = (
            assign_split(view.split, item_id=f"i{image}", patient=f"CXR{n}", source_split=None, seed=0)
            for image in (1, 2)
        )
        assert first == second
