"""Caption backends behind one interface (see `base.Captioner`): offline templates, or an LLM."""

from unimed_data.captions.base import Captioner, CaptionFailure, CaptionUnit
from unimed_data.captions.template import TemplateCaptioner

__all__ = ["CaptionFailure", "CaptionUnit", "Captioner", "TemplateCaptioner", "make_captioner"]


def make_captioner(backend: str, **options) -> Captioner:
    """The offline template backend by name; the `openai` backend is built by the pipeline."""
    if backend == "template":
        return TemplateCaptioner(**options)
    raise ValueError(f"unknown caption backend {backend!r} (available: template, openai)")
