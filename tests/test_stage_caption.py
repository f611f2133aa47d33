"""Caption stage: one backend request per unique label set, existing captions kept, failures recorded."""

from pathlib import Path

from unimed_data.captions import CaptionFailure, CaptionUnit, TemplateCaptioner
from unimed_data.schema import RECORD_SCHEMA, make_key
from unimed_data.stages.caption import caption_dataset
from unimed_data.tables import iter_rows, write_rows
from unimed_data.workspace import Workspace


class CountingCaptioner(TemplateCaptioner):
    """The template backend, counting the units it is asked for."""

    def __init__(self):
        super().__init__()
        self.asked: list[CaptionUnit] = []

    def caption(self, units):
        self.asked.extend(units)
        return super().caption(units)


def record(i: int, labels: list[str], captions: list[str] | None = None, report: str | None = None) -> dict:
    return {
        "key": make_key("chest", str(i)),
        "dataset": "chest",
        "modality": "xray",
        "source_path": f"/{i}.png",
        "image_path": f"/img/{i}.jpg",
        "labels": labels,
        "uncertain_labels": [],
        "report": report,
        "captions": captions or [],
        "caption_source": "original" if captions else None,
        "patient_id": None,
        "split": "train",
        "license": "x",
        "width": 8,
        "height": 8,
        "sha256": None,
    }


def write_converted(ws: Workspace, rows: list[dict]) -> None:
    write_rows(ws.converted("chest"), RECORD_SCHEMA, rows)


def test_backend_is_asked_once_per_unique_label_set_not_per_image(tmp_path: Path):
    ws = Workspace(tmp_path)
    label_sets = [["Edema"], ["Cardiomegaly", "Edema"], ["No Finding"]]
    write_converted(ws, [record(i, label_sets[i % 3]) for i in range(300)])
    captioner = CountingCaptioner()
    summary = caption_dataset(ws, "chest", captioner)
    assert len(captioner.asked) == 3
    assert (summary.inputs, summary.outputs, summary.errors) == (300, 300, 0)
    rows = list(iter_rows(ws.captioned("chest")))
    same = [r["captions"] for r in rows if r["labels"] == ["Edema"]]
    assert len(same) == 100 and all(c == same[0] for c in same)
    assert {r["caption_source"] for r in rows} == {"template"}


def test_existing_captions_are_kept_and_unusable_records_become_errors(tmp_path: Path):
    ws = Workspace(tmp_path)
    write_converted(
        ws,
        [
            record(0, [], captions=["A figure caption from PMC."]),
            record(1, [], report="Lungs are clear. Heart size normal."),
            record(2, []),
        ],
    )
    summary = caption_dataset(ws, "chest", TemplateCaptioner())
    assert (summary.outputs, summary.errors) == (2, 1)
    rows = {r["key"]: r for r in iter_rows(ws.captioned("chest"))}
    assert rows[make_key("chest", "0")]["captions"] == ["A figure caption from PMC."]
    assert rows[make_key("chest", "0")]["caption_source"] == "original"
    assert set(rows[make_key("chest", "1")]["captions"]) == {"Lungs are clear.", "Heart size normal."}
    [error] = list(iter_rows(ws.errors("chest", "caption")))
    assert error["key"] == make_key("chest", "2") and "no labels" in error["reason"]


def test_rerun_asks_nothing_and_a_template_change_recaptions(tmp_path: Path):
    ws = Workspace(tmp_path)
    write_converted(ws, [record(i, ["Edema"]) for i in range(5)])
    caption_dataset(ws, "chest", TemplateCaptioner())
    again = CountingCaptioner()
    assert caption_dataset(ws, "chest", again).skipped and again.asked == []
    templates = tmp_path / "templates" / "captions"
    templates.mkdir(parents=True)
    (templates / "xray.j2").write_text("Edited: {{ findings | join_and }}\n")
    summary = caption_dataset(ws, "chest", TemplateCaptioner(templates_dir=templates.parent))
    assert not summary.skipped
    assert {tuple(r["captions"]) for r in iter_rows(ws.captioned("chest"))} == {("Edited: Edema.",)}


def test_a_failure_answer_from_the_backend_is_recorded_per_record(tmp_path: Path):
    class Refusing(TemplateCaptioner):
        def caption(self, units):
            return {u: CaptionFailure("endpoint refused") for u in units}

    ws = Workspace(tmp_path)
    write_converted(ws, [record(i, ["Edema"]) for i in range(4)])
    summary = caption_dataset(ws, "chest", Refusing())
    assert (summary.outputs, summary.errors) == (0, 4)
    assert {e["reason"] for e in iter_rows(ws.errors("chest", "caption"))} == {"endpoint refused"}
