"""chunkrecorder: per-speaker, sample-exact voice recording for Red-DiscordBot.

``setup`` checks its requirements before importing the cog so that a missing package
or codec becomes one sentence in ``[p]load`` (a ``CogLoadError``) instead of an
``ImportError`` traceback; the heavy imports therefore live inside it (Red itself is
always there: the data statement is read with its helper at import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redbot.core.utils import get_end_user_data_statement

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

#: Read from info.json, where Red's `[p]cog info` shows it before installing: written once.
__red_end_user_data_statement__ = get_end_user_data_statement(__file__)


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
