"""The Red cog: composition only.

Commands come from the mixins in ``commands/``, listeners from ``events/``, background
jobs from ``tasks/``; the logic is in ``core/`` (the service façade and what it holds)
and below it in ``pipeline/``, ``store/``, ``voice/`` and ``audio/``. This file builds
the parts, opens them in ``cog_load`` and closes them in ``cog_unload``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from redbot.core import Config, commands
from redbot.core.bot import Red
from redbot.core.data_manager import cog_data_path
from redbot.core.errors import CogLoadError
from redbot.core.i18n import cog_i18n

from .commands import RecordCommands, RecordingsCommands, SettingsCommands
from .core.abc import CompositeMetaClass
from .core.config import SettingsStore
from .core.posting import short_error
from .core.service import RecordingService
from .core.weblinks import DiscordNames
from .events import DiscordEvents, RedEvents
from .i18n import _
from .objects.errors import StoreError
from .pipeline.recorder import Recorder
from .store import SqlRecordingService
from .tasks import AutoRecordJob, CleanupJob, RestartJob, Ticker
from .utils.background import BackgroundTasks
from .voice.link import VoiceLink

__all__ = ["ChunkRecorder", "DB_NAME"]

DB_NAME = "chunkrecorder.sqlite3"


async def _discord_connector(channel: Any) -> VoiceLink:
    from .voice.discord_bridge import connect

    return await connect(channel)


@cog_i18n(_)  # Red translates every command's help with this (one template: i18n.py)
class ChunkRecorder(
    RecordCommands,
    RecordingsCommands,
    SettingsCommands,
    DiscordEvents,
    RedEvents,
    commands.Cog,
    metaclass=CompositeMetaClass,
):
    """Record voice channels per speaker and mixed, in sync and crash-safe."""

    __version__ = "0.1.0"
    __author__ = "chunkrecorder developers"

    def __init__(self, bot: Red) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Red's Cog declares no types
        self.bot = bot
        self.settings = SettingsStore(self)
        self.data_dir = cog_data_path(self)
        self.store = SqlRecordingService(self.data_dir / DB_NAME)
        self.service = RecordingService(
            bot=bot, settings=self.settings, data_dir=self.data_dir, connector=_discord_connector,
            recorder=Recorder(store=self.store, data_dir=self.data_dir, names=DiscordNames(bot)),
        )
        self.ticker = Ticker(self.service.meetings)
        self.autorecord = AutoRecordJob(bot, self.service)
        self.tasks = BackgroundTasks("cog")

    @property
    def config(self) -> Config:
        return self.settings.config

    def format_help_for_context(self, ctx: commands.Context) -> str:
        return _("{help}\n\nVersion: {version}").format(help=super().format_help_for_context(ctx),
                                                          version=self.__version__)

    async def cog_load(self) -> None:
        try:
            await self.store.open()
            report = await self.service.open()
        except BaseException as exc:
            # Leave nothing running behind a failed load (Red drops the cog object).
            with contextlib.suppress(Exception):
                await self.service.recorder.close()
            await self.store.close()
            if isinstance(exc, (StoreError, OSError)):
                raise CogLoadError(_("chunkrecorder cannot open its recordings in {folder}: {error}").format(
                    folder=self.data_dir, error=short_error(exc))) from exc
            raise
        await self.service.links.start_if_configured()  # download links, if the owner turned them on
        self.tasks.spawn(self.ticker.run(), name="chunkrecorder-ticker")
        self.tasks.spawn(CleanupJob(self.bot, self.service).run(), name="chunkrecorder-cleanup")
        self.tasks.spawn(RestartJob(self.bot, self.service, report).run(), name="chunkrecorder-restart")
        self.tasks.spawn(self.autorecord.run(), name="chunkrecorder-autorecord")
        self.bot.add_view(self.service.flows.views.persistent())  # consent buttons, across restarts

    async def cog_unload(self) -> None:
        self.service.flows.views.close()
        await self.service.links.close()
        await self.tasks.cancel_all()
        await self.service.close()
        await self.store.close()
