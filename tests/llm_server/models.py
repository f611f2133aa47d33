"""`GET /v1/models`: the one model the fake server offers, `fake-model`."""

from __future__ import annotations

from .wire import listing


def models_listing() -> dict:
    return listing([{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}])
