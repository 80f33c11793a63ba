"""chunkrecorder: per-speaker, sample-exact voice recording for Red-DiscordBot.

``setup`` checks its requirements before importing the cog so that a missing package
or codec becomes one sentence in ``[p]load`` (a ``CogLoadError``) instead of an
``ImportError`` traceback; the heavy imports therefore live inside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

__red_end_user_data_statement__ = (
    "This cog stores voice audio of the members it records: one audio file per speaker "
    "and one mixed file per meeting, with the Discord user ids of the speakers, the id of "
    "whoever started the meeting, and each member's choice to opt out of recording. "
    "Audio is kept until an admin deletes it or the server's retention period ends. "
    "A member's own per-speaker recordings, unfinished chunks and opt-out choice are "
    "deleted on a data deletion request (a member's own request keeps the opt-out, so "
    "they are not recorded again); the mixed file of a meeting holds everyone's "
    "voices together and cannot be separated, so it is kept until an admin deletes it."
)


async def setup(bot: "Red") -> None:
    from redbot.core.errors import CogLoadError

    from .core.requirements import missing_requirement

    def _opus() -> object:
        from .audio.opus import ensure_opus

        return ensure_opus()

    problem = missing_requirement(opus=_opus)
    if problem:
        raise CogLoadError(problem)

    from .cog import ChunkRecorder

    await bot.add_cog(ChunkRecorder(bot))
