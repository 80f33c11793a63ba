"""The pipeline's errors. All are ``StoreError``s: their message is fit to show a user,
so the cog can catch one family and print it, never a traceback."""

from __future__ import annotations

from ..store.service import StoreError

__all__ = ["PipelineError", "PromotionTimeout", "FlushError"]


class PipelineError(StoreError):
    """A pipeline operation that cannot proceed; nothing was lost or half-changed."""


class PromotionTimeout(PipelineError):
    """Chunks were still encoding at the deadline; the recorder finishes the meeting later."""


class FlushError(PipelineError):
    """The last windows could not be written; the session is still live and holds them."""
