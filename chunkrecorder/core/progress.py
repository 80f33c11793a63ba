"""A message that shows a stop's progress while chunks finish and files are assembled.

Finishing a long meeting takes a while (the last chunks transcode, then each track is
assembled); without feedback a member would think the bot hung. Edits are rate
limited because Discord allows about five edits per five seconds per channel and the
pipeline may report hundreds of steps.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import discord

from ..i18n import _
from .formatting import bar

__all__ = ["ProgressMessage", "describe", "phase_words"]

log = logging.getLogger("red.chunkrecorder.progress")


def phase_words(phase: str) -> str:
    """What a pipeline phase (``Progress.phase``) is doing, in words."""
    if phase == "flushing":
        return _("writing the last chunks")
    if phase == "transcoding":
        return _("encoding chunks")
    if phase == "assembling":
        return _("assembling the files")
    if phase == "done":
        return _("done")
    return phase


def describe(progress: Any) -> str:
    phase = str(getattr(progress, "phase", ""))
    done = int(getattr(progress, "done", 0))
    total = int(getattr(progress, "total", 0))
    words = phase_words(phase)
    if total > 0:
        return _("{phase} {bar} {done}/{total}").format(phase=words, bar=bar(done, total), done=done, total=total)
    return words


class ProgressMessage:
    """Sends one message and edits it as ``Progress`` reports arrive."""

    def __init__(self, channel: discord.abc.Messageable, title: str, *,
                 min_interval_s: float = 1.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.channel = channel
        self.title = title
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.message: Optional[discord.Message] = None
        self._last_edit = -1e9
        self._last_phase: Optional[str] = None
        self._last_text: Optional[str] = None

    async def start(self, text: str) -> None:
        try:
            self.message = await self.channel.send(self._line(text))
            self._last_text = text
            self._last_edit = self.clock()
        except discord.HTTPException as exc:
            log.info("Could not send the progress message: %s", exc)

    def _line(self, text: str) -> str:
        return _("{title}: {state}").format(title=self.title, state=text)

    async def __call__(self, progress: Any) -> None:
        """The ``ProgressCallback`` handed to the recorder."""
        phase = getattr(progress, "phase", None)
        now = self.clock()
        if phase == self._last_phase and now - self._last_edit < self.min_interval_s:
            return
        self._last_phase = phase
        await self.update(describe(progress))

    async def update(self, text: str) -> None:
        if self.message is None or text == self._last_text:
            return
        self._last_text = text
        self._last_edit = self.clock()
        try:
            await self.message.edit(content=self._line(text))
        except discord.HTTPException as exc:
            log.info("Could not edit the progress message: %s", exc)
