"""The `txt` member in UniMed-CLIP's form, so its own training code reads our shards unchanged.

UniMed-CLIP's trainer (`src/training/data.py`, `preprocess_txt_rad`) looks for the first of its
separator tags that occurs in a sample's text, in a fixed order, splits the text at that tag and
picks one piece: a random one of the first ten (RadImageNet, CheXpert, ChestX-ray8, the retina
sets), the first (Open-i: its original caption), or the last (MIMIC-CXR: the report, and a random
one of the first ten when the last is the literal `noreportpresent`). Text with no tag is taken
whole. UniMed's own scripts end every caption with a dot and a tag, which leaves an empty piece
after the last tag; here the pieces are glued with the tag between them only, so a split gives
back exactly our captions. A part with a single piece therefore carries no tag and is taken whole.
"""

from __future__ import annotations

from collections.abc import Mapping

TXT_FORMATS = ("plain", "unimed")

# Every tag the trainer looks for, in the order it looks: the first one found decides the split.
TRAINER_TAGS = (
    "_radimagenet_",
    "_chexpert_",
    "_openi_",
    "_chestxray8_",
    "_all_retina_merged_",
    "_dr_",
    "_medicat_",
    "_mimiccxr_",
)
ORIGINAL_FIRST = {"_openi_"}  # the trainer always takes the first piece: the original caption
REPORT_LAST = {"_mimiccxr_"}  # the trainer takes the last piece as the report


def txt_member(sample: Mapping, txt_format: str, tags: Mapping[str, str]) -> str:
    """The `txt` of a sample with `captions`, `report` and `dataset` (a record or a shard's json);
    `tags` maps dataset names to their manifest's `unimed_tag`."""
    if txt_format == "plain":
        return sample["captions"][0]
    if txt_format != "unimed":
        raise ValueError(f"unknown txt format {txt_format!r}; expected one of {', '.join(TXT_FORMATS)}")
    return unimed_text(tags.get(sample["dataset"]), list(sample["captions"]), sample.get("report"))


def unimed_text(tag: str | None, captions: list[str], report: str | None) -> str:
    """Captions glued with `tag`, in the order the trainer picks from them (no tag: the primary one).

    A caption that would change how the trainer splits the text (it holds a tag, or ends in the
    start of one) would lose or merge pieces; then the pieces' underscores become spaces, since
    every tag begins and ends with one, and the trainer gets each piece whole.
    """
    pieces = _pieces(tag, captions, report)
    glue = tag if len(pieces) > 1 else None
    text = glue.join(pieces) if glue else pieces[0]
    if _trainer_pieces(text) == (glue, pieces):
        return text
    spaced = [piece.replace("_", " ") for piece in pieces]
    return glue.join(spaced) if glue else spaced[0]


def _pieces(tag: str | None, captions: list[str], report: str | None) -> list[str]:
    """The pieces in the order the trainer picks from them."""
    if tag is None:
        return captions[:1]
    report = report.strip() if report and report.strip() else None
    others = [caption for caption in captions if caption.strip() != report]
    if tag in ORIGINAL_FIRST:
        return [report, *others] if report else captions
    if tag in REPORT_LAST:
        # Without a report, no marker: UniMed's own `noreportpresent` makes the trainer draw from the
        # first ten pieces, the marker itself among them; without it the trainer takes a caption.
        return [*others, report] if report else others
    return captions


def _trainer_pieces(text: str) -> tuple[str | None, list[str]]:
    """The tag the trainer would find first in `text` and the pieces it would split it into."""
    found = next((tag for tag in TRAINER_TAGS if tag in text), None)
    return (found, text.split(found)) if found else (None, [text])
