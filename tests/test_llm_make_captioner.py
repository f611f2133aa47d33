"""`make_captioner`: the configured backend, and the `Captioner` protocol the pipeline relies on
instead of asking which backend it holds."""

from pathlib import Path

import pytest

from unimed_data.captions import CaptionUnit, DatasetHints, TemplateCaptioner, make_captioner
from unimed_data.captions.openai_backend import OpenAICaptioner
from unimed_data.config import CaptionConfig, LLMConfig

UNITS = [CaptionUnit("chexpert", "xray", ("Cardiomegaly",)), CaptionUnit("odir", "fundus", ("glaucoma",))]


def test_template_backend_spends_nothing_and_plans_no_call(tmp_path: Path):
    captioner = make_captioner(
        CaptionConfig(per_record=3), seed=7, cache_path=tmp_path / "c.sqlite", hints={}
    )
    assert isinstance(captioner, TemplateCaptioner)
    assert captioner.identity == TemplateCaptioner(per_record=3, seed=7).identity
    assert not captioner.needs_all_units and captioner.choose_pilot(UNITS) is None
    assert captioner.plan([*UNITS, UNITS[0]]) == {"backend": "template", "units": 2, "calls": 0}
    assert captioner.spent() is None and captioner.usage_line() is None


def test_openai_backend_needs_a_model():
    with pytest.raises(ValueError, match=r"needs a model: captions\.llm\.model or --llm-model"):
        make_captioner(CaptionConfig(backend="openai"), seed=0, cache_path=Path("c.sqlite"), hints={})


def test_openai_backend_takes_the_config_as_its_settings(tmp_path: Path):
    llm = LLMConfig(model="m", price_input_per_1m=2.0)
    hints = {"chexpert": DatasetHints({"cardiomegaly": "an enlarged heart"})}
    captions = CaptionConfig(backend="openai", per_record=4, limit=1, llm=llm)
    captioner = make_captioner(captions, seed=0, cache_path=tmp_path / "c.sqlite", hints=hints)
    assert isinstance(captioner, OpenAICaptioner) and captioner.settings is llm
    assert captioner.source == "llm:m" and captioner.cache_path == tmp_path / "c.sqlite"
    assert captioner.hints == hints and captioner.needs_all_units
    assert captioner.spent() == captioner.usage.as_dict() and captioner.spent()["calls"] == 0
    assert captioner.usage_line().startswith("LLM: 0 calls")

    captioner.choose_pilot(UNITS)
    plan = captioner.plan(UNITS)  # no network: nothing is sent while planning
    assert (plan["units"], plan["selected"], plan["calls"]) == (2, 1, 1)


def test_cache_dir_moves_the_cache(tmp_path: Path):
    captions = CaptionConfig(backend="openai", llm=LLMConfig(model="m", cache_dir=tmp_path / "shared"))
    captioner = make_captioner(captions, seed=0, cache_path=tmp_path / "work" / "c.sqlite", hints={})
    assert captioner.cache_path == tmp_path / "shared" / "captions.sqlite"
