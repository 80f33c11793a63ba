"""Every error of the store and the pipeline a user may see; the message is fit to show.

They live at the bottom of the cog so the commands can catch them without importing the
store or the pipeline, and every layer raises the same family: the cog prints
``str(exc)`` of any ``StoreError`` and never shows a traceback.
"""

from __future__ import annotations

__all__ = ["StoreError", "NotFound", "IllegalTransition", "PipelineError", "PromotionTimeout", "FlushError"]


class StoreError(RuntimeError):
    """A store operation that cannot proceed; the message is fit to show a user."""


class NotFound(StoreError, LookupError):
    """No row with that id (or not in that guild)."""


class IllegalTransition(ValueError):
    """A status move the lifecycle forbids; raised before anything is written."""


class PipelineError(StoreError):
    """A pipeline operation that cannot proceed; nothing was lost or half-changed."""


class PromotionTimeout(PipelineError):
    """Chunks were still encoding at the deadline; the recorder finishes the meeting later."""


class FlushError(PipelineError):
    """The last windows could not be written; the session is still live and holds them."""
