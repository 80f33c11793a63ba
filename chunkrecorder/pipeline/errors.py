"""The pipeline's errors (defined in ``objects.errors``). All are ``StoreError``s: their
message is fit to show a user, so the cog can catch one family and print it."""

from __future__ import annotations

from ..objects.errors import FlushError, PipelineError, PromotionTimeout

__all__ = ["PipelineError", "PromotionTimeout", "FlushError"]
