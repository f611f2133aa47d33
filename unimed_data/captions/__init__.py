"""Caption backends behind one interface (see `base.Captioner`)."""

from unimed_data.captions.base import Captioner, CaptionFailure, CaptionUnit
from unimed_data.captions.template import TemplateCaptioner

__all__ = ["CaptionFailure", "CaptionUnit", "Captioner", "TemplateCaptioner", "make_captioner"]


def make_captioner(backend: str, **options) -> Captioner:
    if backend == "template":
        return TemplateCaptioner(**options)
    raise ValueError(f"unknown caption backend {backend!r} (available: template)")
