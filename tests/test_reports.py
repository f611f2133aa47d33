"""Report section parsing and the findings text: MIMIC-style headers, wet reads, placeholders."""

from __future__ import annotations

from unimed_data.reports import clean_report_text, findings_text, join_findings, report_sections

FULL = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""

WET_READ = """ WET READ: ___ ___ ___ 2:36 PM
  Right lower lobe opacity concerning for pneumonia.
 ______________________________________________________________________________
                                 FINAL REPORT
 HISTORY:  ___-year-old male with cough.

 FINDINGS:  PA and lateral views of the chest.  There is a right lower lobe
 opacity.  No pleural effusion.

 IMPRESSION:  Right lower lobe pneumonia.

 NOTIFICATION:  Findings discussed with Dr. ___ by telephone at ___ on ___.

 RECOMMENDATION(S):  Follow-up radiograph in ___ weeks.
"""

IMPRESSION_ONLY = """                                 FINAL REPORT
 INDICATION:  Line placement.

 IMPRESSION:  Right IJ catheter tip in the mid SVC.  No pneumothorax.
"""

LOWERCASE = """Indication: chest pain
Findings: Heart size is normal
lungs are clear
Impression: no acute process.
"""

NO_SECTIONS = """                                 FINAL REPORT
 PORTABLE CHEST OF ___

 COMPARISON:  ___.

 There is no focal consolidation.
"""


def test_sections_of_a_full_report():
    sections = report_sections(FULL)
    assert list(sections) == [
        "FINAL REPORT",
        "EXAMINATION",
        "INDICATION",
        "TECHNIQUE",
        "COMPARISON",
        "FINDINGS",
        "IMPRESSION",
    ]
    assert sections["EXAMINATION"] == "CHEST (PA AND LAT)"
    assert sections["FINDINGS"].startswith("There is no focal consolidation")
    assert sections["FINDINGS"].endswith("silhouette is normal.")
    assert sections["IMPRESSION"] == "No acute cardiopulmonary process."


def test_findings_text_joins_findings_and_impression():
    assert findings_text(FULL) == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities "
        "that most likely represent nipple shadows. The cardiomediastinal silhouette is normal. "
        "No acute cardiopulmonary process."
    )


def test_wet_read_and_trailing_sections_stay_out_of_the_findings():
    sections = report_sections(WET_READ)
    assert "Right lower lobe opacity concerning" in sections["WET READ"]
    assert "FINAL REPORT" in sections  # the underscore line ended the wet read
    assert sections["HISTORY"] == "___-year-old male with cough."
    assert sections["NOTIFICATION"].startswith("Findings discussed")
    assert sections["RECOMMENDATIONS"] == "Follow-up radiograph in ___ weeks."
    assert findings_text(WET_READ) == (
        "PA and lateral views of the chest. There is a right lower lobe opacity. No pleural effusion. "
        "Right lower lobe pneumonia."
    )


def test_impression_only_and_lowercase_headers():
    assert findings_text(IMPRESSION_ONLY) == "Right IJ catheter tip in the mid SVC. No pneumothorax."
    sections = report_sections(LOWERCASE)
    assert sections["FINDINGS"] == "Heart size is normal\nlungs are clear"
    assert findings_text(LOWERCASE) == "Heart size is normal lungs are clear. no acute process."


def test_report_without_findings_or_impression_gives_none():
    assert findings_text(NO_SECTIONS) is None
    assert findings_text("") is None
    assert findings_text("FINDINGS:\n\nIMPRESSION:  ___\n") is None
    sections = report_sections(NO_SECTIONS)
    assert sections["FINAL REPORT"] == "PORTABLE CHEST OF ___"  # no colon: not a header
    assert sections["COMPARISON"] == "___.\n\n There is no focal consolidation."


def test_placeholders_are_removed_cleanly():
    text = "FINDINGS: Compared to ___ radiograph, the ___ tube (___) is unchanged.\nIMPRESSION: Discussed with Dr. ___ at ___ on ___ ___."
    result = findings_text(text)
    assert result == "Compared to radiograph, the tube is unchanged. Discussed."
    assert "_" not in result and "  " not in result
    assert clean_report_text("No XXXX effusion. Normal chest x-XXXX.") == "No effusion. Normal chest x."
    assert clean_report_text("___-year-old woman, ___ , stable.") == "year-old woman, stable."


def test_join_findings():
    assert join_findings("Lungs clear", "Normal.") == "Lungs clear. Normal."
    assert join_findings(None, " Normal. ") == "Normal."
    assert join_findings("  ", None) is None
