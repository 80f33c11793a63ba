"""The compact (Ogg Opus) copy of a recording: made once, on first request, kept beside it.

Made in the transcoder's encoder processes (the conversion is CPU work: about 30
CPU-seconds per hour of audio, see ``audio.ogg_opus``), one at a time so that live
meetings' chunks keep the other workers. Two requests for the same recording wait for
one conversion.

The copy is ``recordings/recording_<meeting>_<who>.opus``, beside its MP3, and goes
with it: every removal of a recording file removes its derived files too
(``Layout.derived_paths``). It names the MP3 it was made from (the MP3's sha256 in an
OpusTags comment), so a recording rebuilt (or re-tagged) under the same id gets a new
copy instead of a stale one. It carries the MP3's tags (title, speaker, server, date,
track, comment, and the mix's chapters as ``CHAPTERnnn`` comments), read from the MP3. A copy finished after its recording was deleted is removed at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional

from ..audio import vorbis
from ..audio.flac_mp3 import ListenFile, flac_to_mp3, source_of
from ..audio.ogg import OggError
from ..audio.ogg_opus import CompactFile, mp3_to_ogg_opus, read_comments
from ..objects.errors import NotFound
from ..objects.records import Recording
from ..store.service import SqlRecordingService
from .blocking import run_blocking
from .paths import Layout, remove_files
from .tagging import describe, read_chapters, read_tags
from .transcoder import Transcoder

__all__ = ["CompactCopy", "Compactor", "SOURCE_TAG"]

log = logging.getLogger("red.chunkrecorder.pipeline.compact")

#: OpusTags comment naming the MP3 (its sha256) a copy was made from.
SOURCE_TAG = "CHUNKRECORDER_SOURCE_SHA256"


@dataclass(frozen=True, slots=True)
class CompactCopy:
    path: Path
    size: int
    sha256: str


class Compactor:
    """``await ensure(recording)``: the path, size and sha256 of its Opus copy, made if needed."""

    def __init__(self, store: SqlRecordingService, layout: Layout, transcoder: Transcoder) -> None:
        self._store = store
        self._layout = layout
        self._transcoder = transcoder
        self._one_at_a_time = asyncio.Semaphore(1)
        self._making: dict[str, asyncio.Future[CompactCopy]] = {}
        #: sha256 of copies already read, by (path, mtime_ns, size): hashing 14 MiB once.
        self._digests: dict[tuple[str, int, int], str] = {}
        self.made = 0

    async def ensure(self, recording: Recording) -> CompactCopy:
        return await self._once(recording.id, lambda: self._ensure(recording))

    async def _once(self, key: str, make: Callable[[], Awaitable[CompactCopy]]) -> CompactCopy:
        """``make()``, one at a time per ``key``: a second request waits for the first's result."""
        running = self._making.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[CompactCopy] = asyncio.get_running_loop().create_future()
        self._making[key] = future
        try:
            copy = await make()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter may not exist
            raise
        else:
            future.set_result(copy)
            return copy
        finally:
            del self._making[key]

    async def _forget_if_deleted(self, recording: Recording) -> None:
        """A copy made while its recording was being deleted goes too (NotFound is raised)."""
        try:
            await self._store.get_recording(recording.id)
        except NotFound:
            await run_blocking(remove_files, self._layout.derived_paths(recording.path))
            raise

    async def _ensure(self, recording: Recording) -> CompactCopy:
        target = self._layout.compact_path(recording.path)
        existing = await run_blocking(self._existing, target, recording.sha256)
        if existing is not None:
            return existing
        async with self._one_at_a_time:
            log.info("making the Opus copy of recording %s", recording.id)
            tags = await run_blocking(_copied_tags, Path(recording.path))
            made: CompactFile = await self._transcoder.run_job(
                mp3_to_ogg_opus, recording.path, str(target),
                comments=[*tags, f"{SOURCE_TAG}={recording.sha256}"])
        await self._forget_if_deleted(recording)
        self.made += 1
        st = await run_blocking(os.stat, target)
        self._digests[(str(target), st.st_mtime_ns, st.st_size)] = made.sha256
        return CompactCopy(target, made.size_bytes, made.sha256)

    async def ensure_listen(self, recording: Recording) -> CompactCopy:
        """The MP3 of a FLAC recording (``[p]recordings get <id> mp3``): made once, kept beside it.

        The same rules as the Opus copy: one job at a time in the encoder processes, two
        requests wait for one encode, the copy names its source's sha256 (a repaired or
        re-tagged FLAC gets a new one) and goes with the recording (``Layout.derived_paths``).
        """
        return await self._once(recording.id + ":listen", lambda: self._ensure_listen(recording))

    async def _ensure_listen(self, recording: Recording) -> CompactCopy:
        target = self._layout.listen_path(recording.path)
        if await run_blocking(source_of, target) == recording.sha256:
            existing = await run_blocking(self._digest, target)
            if existing is not None:
                return existing
        async with self._one_at_a_time:
            log.info("making the MP3 of FLAC recording %s", recording.id)
            made: ListenFile = await self._transcoder.run_job(
                flac_to_mp3, recording.path, str(target), source_sha256=recording.sha256)
        await self._forget_if_deleted(recording)
        self.made += 1
        return CompactCopy(target, made.size_bytes, made.sha256)

    def _digest(self, target: Path) -> Optional[CompactCopy]:
        """A file's path, size and sha256 (cached by mtime and size; blocking)."""
        try:
            st = os.stat(target)
        except OSError:
            return None
        key = (str(target), st.st_mtime_ns, st.st_size)
        digest = self._digests.get(key)
        if digest is None:
            digest = self._digests[key] = describe(target)[0]
        return CompactCopy(target, st.st_size, digest)

    def _existing(self, target: Path, source_sha256: str) -> Optional[CompactCopy]:
        """A copy already made from this MP3, or None (blocking)."""
        try:
            if read_comments(target).get(SOURCE_TAG) != source_sha256:
                return None
        except (OSError, OggError):
            return None
        return self._digest(target)


def _copied_tags(mp3_path: Path) -> list[str]:
    """The MP3's tags as OpusTags comments (``KEY=value``), chapters included (blocking)."""
    try:
        pairs = list(read_tags(mp3_path).items())
        chapters = read_chapters(mp3_path)
    except OSError as exc:
        log.warning("tags of %s unreadable (%s); the Opus copy has none", mp3_path, exc)
        return []
    pairs += vorbis.chapter_comments([(c.start_ms, c.title) for c in chapters])
    return [f"{k}={v}" for k, v in pairs]
