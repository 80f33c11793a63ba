"""What ``simulate`` does after promotion when asked to deliver: Opus copies, parts, links.

Through the same code the cog uses, so delivery can be checked without Discord:

* ``--format opus``: ``Recorder.compact`` makes each recording's Ogg Opus copy in the
  encoder processes (as ``[p]recordings get <id> opus`` does); the report names it
  (``opus_path``).
* ``--split-limit BYTES``: ``audio.parts`` cuts each recording over the limit into
  parts (as the cog does for uploads), written to ``<data dir>/parts/<recording id>/``
  (``parts``; with ``--format opus`` also ``opus_parts`` for the Opus copy).
* ``--web HOST:PORT``: the cog's web server (``chunkrecorder.web``) serves the meeting
  with a fresh link secret; the report gains ``links`` (the meeting's page and each
  recording) and is handed over (printed and flushed by the CLI) as soon as the links
  work, then the server keeps serving ``--serve-seconds`` (wall clock) before it stops.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from chunkrecorder.audio.parts import write_parts
from chunkrecorder.web import Catalog, LinkSigner, WebServer, new_secret

if TYPE_CHECKING:  # pragma: no cover
    from .simulate import SimulationResult

__all__ = ["DeliveryOptions", "HarnessNames", "deliver"]

log = logging.getLogger("harness.delivery")

#: Links of a simulated meeting work this long (the run ends long before).
LINK_TTL_S = 7 * 86_400.0


@dataclass(frozen=True)
class DeliveryOptions:
    web: Optional[tuple[str, int]] = None
    serve_seconds: float = 0.0
    opus: bool = False
    split_limit: Optional[int] = None

    @property
    def anything(self) -> bool:
        return self.web is not None or self.opus or self.split_limit is not None


class HarnessNames:
    """``web.Names`` (and the recorder's ``tagging.NameSource``) from the harness's speaker list."""

    def __init__(self, speakers: dict[int, str], channel: str, guild: Optional[str] = None) -> None:
        self.speakers = speakers
        self.channel_name = channel
        self.guild_name = guild

    def speaker(self, guild_id: int, user_id: int) -> Optional[str]:
        return self.speakers.get(user_id)

    def channel(self, guild_id: int, channel_id: int) -> Optional[str]:
        return self.channel_name

    def guild(self, guild_id: int) -> Optional[str]:
        return self.guild_name


async def deliver(result: "SimulationResult", recorder: Any, opts: DeliveryOptions, *, names: HarnessNames,
                  on_ready: Optional[Callable[["SimulationResult"], None]]) -> None:
    """Fill ``result`` in (``opus_path``, ``parts``, ``links``), call ``on_ready``, then serve."""
    recordings = {r.id: r for r in await recorder.library.recordings_for_meeting(result.meeting_id)}
    for info in result.recordings:
        rec = recordings[info.id]
        if opts.opus:
            copy = await recorder.compact(rec)
            info.opus_path = str(Path(copy.path).resolve())
        if opts.split_limit is not None:
            folder = result.data_dir / "parts" / rec.id
            if rec.size_bytes > opts.split_limit:
                info.parts = [str(p) for p in await asyncio.to_thread(
                    write_parts, rec.path, opts.split_limit, folder, Path(rec.path).name)]
            if info.opus_path and Path(info.opus_path).stat().st_size > opts.split_limit:
                info.opus_parts = [str(p) for p in await asyncio.to_thread(
                    write_parts, info.opus_path, opts.split_limit, folder, Path(info.opus_path).name)]
    if opts.web is None:
        if on_ready is not None:
            on_ready(result)
        return
    host, port = opts.web
    server = WebServer(Catalog(recorder, names), LinkSigner(bytes.fromhex(new_secret())), host=host, port=port)
    await server.start()
    try:
        links = {"meeting": server.link("m", result.meeting_id, ttl_s=LINK_TTL_S)}
        links.update({info.id: server.link("r", info.id, ttl_s=LINK_TTL_S) for info in result.recordings})
        result.links = links
        result.server = server
        if on_ready is not None:
            on_ready(result)
        if opts.serve_seconds > 0:
            log.info("serving %s for %.0f s", links["meeting"], opts.serve_seconds)
            await asyncio.sleep(opts.serve_seconds)
    finally:
        await server.stop()
        result.server = None
