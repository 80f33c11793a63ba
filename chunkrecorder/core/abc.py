"""Composition of the cog from one mixin per command group (as Vex-Cogs' ``status``)."""

from __future__ import annotations

from abc import ABC, ABCMeta
from typing import TYPE_CHECKING

from redbot.core import commands

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core import Config
    from redbot.core.bot import Red

    from ..store import SqlRecordingService
    from .live import MeetingManager

__all__ = ["CompositeMetaClass", "MixinMeta"]


class MixinMeta(ABC):
    """What every command mixin may use from the assembled cog.

    Declared here so each mixin type-checks on its own without importing the cog.
    """

    bot: "Red"
    config: "Config"
    store: "SqlRecordingService"
    meetings: "MeetingManager"


class CompositeMetaClass(type(commands.Cog), ABCMeta):  # type: ignore[misc]
    """Lets ``commands.Cog``'s metaclass and ``ABC``'s work on one class."""
