"""Radiology report text: section parsing and the findings text that caption synthesis starts from.

MIMIC-CXR free-text reports look like::

     WET READ: ___ ___ ___ 2:36 PM
      No acute cardiopulmonary process.
     ______________________________________________________________________________
                                     FINAL REPORT
     EXAMINATION:  CHEST (PA AND LAT)

     INDICATION:  ___F with new onset ascites  // eval for infection

     FINDINGS:

     There is no focal consolidation, pleural effusion or pneumothorax.  The
     cardiomediastinal silhouette is normal.

     IMPRESSION:  No acute cardiopulmonary process.

A header starts a line: a known section name in any case (`Findings:`, `IMPRESSION:`,
`Recommendation(s):`), or any other run of uppercase words followed by a colon (`REASON FOR
EXAMINATION:`), or the colon-less banners `FINAL REPORT` and `WET READ ...`. A section's text runs
from its header (the rest of the header line included) to the next header or to a separator line of
underscores; blank lines inside a section are kept as paragraph breaks, since MIMIC often leaves a
blank line between `FINDINGS:` and its text. Text before the first header is kept under "".

De-identification placeholders are removed by `clean_report_text`: MIMIC's `___` and Open-i's
`XXXX`, together with an honorific or a linking preposition that only pointed at the removed name or
date ("discussed with Dr. ___ at ___" -> "discussed"), then spacing and punctuation are tidied.
"""

from __future__ import annotations

import re

# Canonical section names, keyed by the spellings that map to them (compared in upper case).
_KNOWN = {
    "FINDINGS": "FINDINGS",
    "FINDING": "FINDINGS",
    "IMPRESSION": "IMPRESSION",
    "IMPRESSIONS": "IMPRESSION",
    "CONCLUSION": "IMPRESSION",
    "CONCLUSIONS": "IMPRESSION",
    "INDICATION": "INDICATION",
    "INDICATIONS": "INDICATION",
    "HISTORY": "HISTORY",
    "CLINICAL HISTORY": "HISTORY",
    "COMPARISON": "COMPARISON",
    "COMPARISONS": "COMPARISON",
    "TECHNIQUE": "TECHNIQUE",
    "EXAMINATION": "EXAMINATION",
    "EXAM": "EXAMINATION",
    "WET READ": "WET READ",
    "NOTIFICATION": "NOTIFICATION",
    "RECOMMENDATION": "RECOMMENDATIONS",
    "RECOMMENDATIONS": "RECOMMENDATIONS",
    "RECOMMENDATION(S)": "RECOMMENDATIONS",
    "FINAL REPORT": "FINAL REPORT",
}
_KNOWN_NAMES = "|".join(sorted((re.escape(name) for name in _KNOWN), key=len, reverse=True))
# A known name in any case, followed by a colon.
_KNOWN_HEADER = re.compile(rf"^\s*({_KNOWN_NAMES})\s*:(.*)$", re.IGNORECASE)
# Any other header: up to six uppercase words (letters, digits after the first, / & ( ) ' -), then a colon.
_UPPER_HEADER = re.compile(r"^\s*([A-Z][A-Z()/&'-]*(?: [A-Z0-9()/&'-]+){0,5})\s*:(.*)$")
# Colon-less banners: `FINAL REPORT` alone on its line, `WET READ` or `WET READ VERSION #2 ...`.
_FINAL_REPORT = re.compile(r"^\s*FINAL REPORT\s*:?\s*$", re.IGNORECASE)
_WET_READ = re.compile(r"^\s*WET READ(?: VERSION #?\d+)?\b\s*:?(.*)$", re.IGNORECASE)
_SEPARATOR = re.compile(r"^\s*_{10,}\s*$")

_PLACEHOLDER = r"(?:_{2,}|\bX{4,}|X{4,}\b)"
_PLACEHOLDERS = re.compile(
    r"(?:\b(?:at|on|dated|with|by)\s+)?"  # a preposition that only linked the removed name or date
    r"(?:\b(?:Drs?|Mrs?|Ms|Prof)\.?\s*)?"  # an honorific whose name was removed
    rf"{_PLACEHOLDER}(?:[\s,/-]*{_PLACEHOLDER})*(?:-(?=\w))?",  # "___-year-old" -> "year-old"
    re.IGNORECASE,
)


def _header(line: str) -> tuple[str, str] | None:
    """(canonical section name, text after the header on the same line), or None for a text line."""
    if _FINAL_REPORT.match(line):
        return "FINAL REPORT", ""
    match = _WET_READ.match(line)
    if match:
        return "WET READ", match.group(1)
    match = _KNOWN_HEADER.match(line)
    if match:
        return _KNOWN[re.sub(r"\s+", " ", match.group(1).upper())], match.group(2)
    match = _UPPER_HEADER.match(line)
    if match:
        name = re.sub(r"\s+", " ", match.group(1))
        return _KNOWN.get(name, name), match.group(2)
    return None


def report_sections(text: str) -> dict[str, str]:
    """Split a free-text report into {SECTION NAME: text}; text before any header goes under "".

    Names are canonical upper case (`FINDINGS`, `IMPRESSION`, `RECOMMENDATIONS`, ...; unknown
    uppercase headers keep their own spelling). Section text keeps its line breaks, trimmed of
    surrounding blank lines; a section that occurs twice has both parts joined by a blank line.
    Sections whose text is empty are still present (with "").
    """
    sections: dict[str, list[str]] = {}
    current = ""
    lines: list[str] = []

    def close() -> None:
        body = "\n".join(line.rstrip() for line in lines).strip("\n").strip()
        if current in sections:
            if body:
                sections[current].append(body)
        else:
            sections[current] = [body] if body else []

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _SEPARATOR.match(line):
            close()  # a line of underscores ends the section (the wet read, before FINAL REPORT)
            current, lines = "", []  # stray text after it, before any header, joins the preamble
            continue
        header = _header(line)
        if header is None:
            lines.append(line)
            continue
        close()
        current, lines = header[0], [header[1]]
    close()
    result = {name: "\n\n".join(parts) for name, parts in sections.items()}
    if not result.get(""):
        result.pop("", None)
    return result


def clean_report_text(text: str) -> str:
    """Remove de-identification placeholders, then collapse whitespace and tidy punctuation."""
    text = _PLACEHOLDERS.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"(\w)-(?=[\s,.;:!?)]|$)", r"\1", text)  # "x-XXXX" -> "x"
    text = re.sub(r"\(\s*[,;/-]*\s*\)", " ", text)  # parentheses left empty
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)  # no space before punctuation
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r",\s*(?=[,.;:!?])", "", text)  # ", ." -> "."
    text = re.sub(r"(?<![.])\.\.(?!\.)", ".", text)  # ".." -> "." (an ellipsis stays)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^[,.;:]+\s*", "", text)
    return text


def _sentence(text: str) -> str:
    return text if text[-1] in ".!?" else text + "."


def join_findings(findings: str | None, impression: str | None) -> str | None:
    """Cleaned FINDINGS then IMPRESSION as one text; either alone; None when both are empty."""
    parts = [clean_report_text(part) for part in (findings, impression) if part]
    parts = [part for part in parts if part]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return f"{_sentence(parts[0])} {parts[1]}"


def findings_text(text: str) -> str | None:
    """The report's FINDINGS and IMPRESSION joined, placeholders removed; None if it has neither."""
    sections = report_sections(text)
    return join_findings(sections.get("FINDINGS"), sections.get("IMPRESSION"))
