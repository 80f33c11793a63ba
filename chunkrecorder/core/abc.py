"""What every mixin of the cog may use, declared once (as Red's audio cog's ``core/abc.py``).

The cog is composed of command mixins (``commands/``) and listener mixins (``events/``);
each type-checks on its own against this declaration instead of importing the cog.
Everything they share is the bot and the service façade: no mixin calls another.
"""

from __future__ import annotations

from abc import ABC, ABCMeta
from typing import TYPE_CHECKING

from discord.ext.commands import CogMeta

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from .service import RecordingService

__all__ = ["CompositeMetaClass", "MixinMeta"]


class MixinMeta(ABC):
    """The assembled cog, as its mixins see it."""

    #: The Red bot the cog is loaded in.
    bot: "Red"
    #: Meetings (live and finished), recordings, settings and erasure: the only way in.
    service: "RecordingService"


class CompositeMetaClass(CogMeta, ABCMeta):
    """Lets ``commands.Cog``'s metaclass and ``ABC``'s work on one class."""
