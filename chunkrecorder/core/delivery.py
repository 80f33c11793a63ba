"""Every finished recording reaches the people allowed to have it, in a form Discord takes.

Who gets what (``[p]recordingset delivery``):

* ``channel`` (the default): the meeting goes to the text channel it was started from,
  if everyone who can read that channel could have heard the meeting
  (``access.audience_could_hear``); otherwise to whoever started it, by direct
  message, and the channel is told so.
* ``dm``: whoever started the meeting gets all of it by direct message, each speaker
  their own file; the channel gets the summary.

In what form:

* With the download server on (``[p]recordingset web``), a link: the meeting's page
  for the meeting, a recording's link for one file. Nothing is attached.
* Without it, attachments: files under the upload limit whole, files over it as parts
  (``audio.parts``: MP3 cut on frames, so the parts ``cat`` back to the file, or Opus
  cut on pages, each a file of its own). At most 10 attachments and the upload limit
  per message, a pause between messages (Discord rate-limits uploads per channel), and
  a progress message while a long meeting is being posted.

``[p]recordings get <id> [mp3|opus]`` keeps its own rule of who may fetch (the command
checks it) and answers in the channel it was used in: the file if it fits, else a
link, else parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import discord
from discord.utils import DEFAULT_FILE_SIZE_LIMIT_BYTES

from ..audio.parts import Part, PartError, plan_parts, read_part
from ..i18n import _
from ..objects.records import Meeting, Recording, RecordingKind
from ..web import Format
from .access import audience_could_hear
from .config import SettingsStore
from .formatting import batches, channel_label, clock_duration, human_size, member_name
from .posting import result_text, send_long, short_error
from .progress import ProgressMessage
from .weblinks import WebLinks

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from ..pipeline.recorder import Recorder

__all__ = ["Delivery", "MAX_ATTACHMENTS"]

log = logging.getLogger("red.chunkrecorder.delivery")

#: Discord's limit of attachments per message.
MAX_ATTACHMENTS = 10


@dataclass(frozen=True, slots=True)
class _Upload:
    """One attachment: a whole file, or one part of one."""

    filename: str
    size: int
    path: Path
    part: Optional[Part] = None

    def open(self) -> discord.File:
        """Blocking: the whole file opened, or the part's bytes read (at most the upload limit)."""
        if self.part is None:
            return discord.File(open(self.path, "rb"), filename=self.filename)
        return discord.File(io.BytesIO(read_part(self.part)), filename=self.filename)


class Delivery:
    """Posts meetings and fetched recordings as links, attachments or parts."""

    #: Seconds between two upload messages to one channel.
    pace_s: float = 1.0

    def __init__(self, *, bot: "Red", settings: SettingsStore, recorder: "Recorder", links: WebLinks,
                 data_dir: Path) -> None:
        self.bot = bot
        self.settings = settings
        self.recorder = recorder
        self.links = links
        self.data_dir = data_dir

    # ------------------------------------------------------------------ a finished meeting
    async def post_meeting(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting,
                           result: Any, recordings: Sequence[Recording], *,
                           prefix: str, note: Optional[str] = None) -> Optional[discord.abc.Messageable]:
        """Post the meeting; returns where the whole meeting went (the channel, the starter's
        DMs, or None when that could not be reached), for what follows the files. ``note``
        is a line added to the summary (what reconnects left silent)."""
        s = await self.settings.guild(guild.id)
        fmt: Format = "opus" if s.post_format == "opus" else "mp3"
        summary = result_text(guild, meeting, result, recordings) + (f"\n{note}" if note else "")
        link = self.links.meeting_link(meeting.id, days=s.link_expiry_days, fmt=fmt) if recordings else None
        voice = guild.get_channel(meeting.channel_id)
        if s.delivery == "channel" and audience_could_hear(channel, voice):
            with contextlib.suppress(discord.HTTPException):
                await send_long(channel, summary + (self._link_line(link, s.link_expiry_days) if link else ""))
            if link is None:
                await self.upload(guild, channel, recordings, fmt=fmt, limit=guild.filesize_limit, prefix=prefix)
            return channel
        # Privately: the starter gets the meeting; with `delivery dm` each speaker their own file.
        unreached: list[str] = []
        starter = guild.get_member(meeting.started_by)
        body = summary + (self._link_line(link, s.link_expiry_days) if link else "")
        target: Optional[discord.abc.Messageable] = None
        if starter is not None and await self._direct(guild, starter, body, [] if link else recordings,
                                                      fmt=fmt, prefix=prefix):
            target = starter.dm_channel
        else:
            unreached.append(member_name(guild, meeting.started_by))
        if s.delivery == "dm":
            where = channel_label(voice.name if voice is not None else None, meeting.channel_id)
            for rec in recordings:
                if rec.kind is not RecordingKind.PER_USER or rec.user_id is None or rec.user_id == meeting.started_by:
                    continue
                member = guild.get_member(rec.user_id)
                own = self.links.recording_link(rec.id, days=s.link_expiry_days, fmt=fmt)
                text = _("🎙️ Your recording of **{channel}**: {length}, {size} (`{recording_id}`).").format(
                    channel=where, length=clock_duration(rec.duration_in_ms), size=human_size(rec.size_bytes),
                    recording_id=rec.id)
                if own:
                    text += self._link_line(own, s.link_expiry_days)
                if member is None or not await self._direct(guild, member, text, [] if own else [rec], fmt=fmt,
                                                            prefix=prefix):
                    unreached.append(member_name(guild, rec.user_id))
        head = summary.split("\n", 1)[0]
        starter_name = member_name(guild, meeting.started_by)
        if s.delivery == "dm":
            said = _("The files went by direct message: the whole meeting to {starter}, and each speaker their "
                     "own file.").format(starter=starter_name)
        elif voice is None:
            said = _("The voice channel is gone, so nobody can tell who could hear the meeting: the files went to "
                     "{starter} by direct message.").format(starter=starter_name)
        else:
            said = _("Not everyone who can read this channel can see **{voice}**, so the files went to {starter} "
                     "by direct message.").format(
                voice=channel_label(voice.name if voice is not None else None, meeting.channel_id),
                starter=starter_name)
        lines = [head, said]
        if unreached:
            lines.append(_("I could not send a direct message to {members} (their direct messages are closed); "
                           "`{command}` fetches a file.").format(members=", ".join(unreached),
                                                                 command=f"{prefix}recordings get <id>"))
        with contextlib.suppress(discord.HTTPException):
            await send_long(channel, "\n".join(lines))
        return target

    def _link_line(self, link: str, days: int) -> str:
        if days == 1:
            return "\n" + _("🔗 Download (works for 1 day): {link}").format(link=link)
        return "\n" + _("🔗 Download (works for {days} days): {link}").format(link=link, days=days)

    async def _direct(self, guild: discord.Guild, member: discord.Member, text: str,
                      recordings: Sequence[Recording], *, fmt: Format, prefix: str) -> bool:
        """``text`` and the files to ``member`` by DM; False if Discord refuses (DMs closed)."""
        try:
            dm = member.dm_channel or await member.create_dm()
            await send_long(dm, text)
        except discord.HTTPException as exc:
            log.info("Could not DM %s: %s", member.id, exc)
            return False
        if recordings:
            await self.upload(guild, dm, recordings, fmt=fmt, limit=DEFAULT_FILE_SIZE_LIMIT_BYTES, prefix=prefix)
        return True

    # ------------------------------------------------------------------ one recording
    async def send_recording(self, guild: discord.Guild, target: discord.abc.Messageable, rec: Recording,
                             fmt: Format, *, prefix: str, listen: bool = False) -> None:
        """``[p]recordings get``: the file if it fits, else a link (server on), else parts.

        ``listen`` (``get <id> mp3`` asked for MP3 by name): a FLAC recording comes as its
        MP3, made once and kept beside it; without it, "mp3" is the recording as archived.
        """
        s = await self.settings.guild(guild.id)
        limit = guild.filesize_limit
        size = rec.size_bytes
        if fmt == "opus":
            async with _typing(target):
                size = (await self.recorder.compact(rec)).size
        elif listen and _is_flac(rec):
            async with _typing(target):
                size = (await self.recorder.listen_mp3(rec)).size
        # (a link serves the recording as archived: the MP3 made from a FLAC comes as parts instead)
        linkable = size > limit and not (listen and _is_flac(rec))
        link = self.links.recording_link(rec.id, days=s.link_expiry_days, fmt=fmt) if linkable else None
        if link is not None:
            await target.send(_("`{filename}` ({size}) is over this server's {limit} upload limit: download it "
                                "here.").format(filename=self._name(rec, fmt), size=human_size(size),
                                                limit=human_size(limit)) + self._link_line(link, s.link_expiry_days))
            return
        await self.upload(guild, target, [rec], fmt=fmt, limit=limit, prefix=prefix, listen=listen)

    @staticmethod
    def _name(rec: Recording, fmt: Format, listen: bool = False) -> str:
        if fmt == "mp3" and listen and _is_flac(rec):
            return str(Path(rec.filename).with_suffix(".mp3"))
        return rec.filename if fmt == "mp3" else str(Path(rec.filename).with_suffix(".opus"))

    # ------------------------------------------------------------------ attachments
    async def upload(self, guild: discord.Guild, target: discord.abc.Messageable, recordings: Sequence[Recording],
                     *, fmt: Format, limit: int, prefix: str, listen: bool = False) -> None:
        """Attach every recording: whole when it fits, in parts when it does not."""
        if not recordings:
            return
        permissions_for = getattr(target, "permissions_for", None)
        if permissions_for is not None and guild.me is not None and not permissions_for(guild.me).attach_files:
            with contextlib.suppress(discord.HTTPException):
                await target.send(_("I can't attach files in this channel (I need Attach Files); `{command}` works "
                                    "where I can.").format(command=f"{prefix}recordings get <id>"))
            return
        notes: list[str] = []
        uploads: list[_Upload] = []
        firsts: dict[int, str] = {}  # index of a file's first part -> what the message says about its parts
        making = None
        if fmt == "opus" and len(recordings) > 1:  # a minute or so per hour of audio, per file
            making = ProgressMessage(target, _("🗜️ Making the Opus files"))
            await making.start(_("0/{files} files").format(files=len(recordings)))
        for n, rec in enumerate(recordings):
            if making is not None and n:
                await making.update(_("{done}/{files} files").format(done=n, files=len(recordings)))
            try:
                path, size = await self._file(rec, fmt, listen)
            except Exception as exc:  # noqa: BLE001 - one file's trouble must not stop the others
                log.warning("Could not prepare recording %s as %s: %s", rec.id, fmt, exc)
                notes.append(_("`{recording_id}` could not be prepared ({error}).").format(
                    recording_id=rec.id, error=short_error(exc)))
                continue
            name = self._name(rec, fmt, listen)
            if size <= limit:
                uploads.append(_Upload(name, size, path))
                continue
            try:
                parts = await asyncio.to_thread(plan_parts, path, limit, name)
            except (PartError, OSError) as exc:
                log.warning("Could not cut %s into parts: %s", path, exc)
                notes.append(_(
                    "`{filename}` ({size}) is over this server's {limit} upload limit: the bot owner can copy it "
                    "from `{path}` in the cog's data folder."
                ).format(filename=name, size=human_size(size), limit=human_size(limit),
                         path=_relative(path, self.data_dir)))
                continue
            firsts[len(uploads)] = self._parts_note(name, fmt, len(parts), limit)
            uploads += [_Upload(p.filename, p.size, path, p) for p in parts]
        if making is not None:
            await making.update(_("{done}/{files} files").format(done=len(recordings), files=len(recordings)))
        groups = batches([u.size for u in uploads], limit, max_files=MAX_ATTACHMENTS)
        progress = None
        if len(groups) > 3:  # a long post: say how far it is
            progress = ProgressMessage(target, _("📤 Uploading {files} files").format(files=len(uploads)))
            await progress.start(_("0/{messages} messages").format(messages=len(groups)))
        for n, group in enumerate(groups):
            if n:
                await asyncio.sleep(self.pace_s)
            content = "\n".join(firsts[i] for i in group if i in firsts) or None
            files: list[discord.File] = []
            try:
                for i in group:
                    files.append(await asyncio.to_thread(uploads[i].open))
                await target.send(content=content, files=files)
            except (OSError, PartError) as exc:
                notes.append(_("Missing on disk: {files}.").format(files=", ".join(f"`{uploads[i].filename}`"
                                                                                  for i in group)))
                log.warning("Upload of %s failed: %s", [uploads[i].filename for i in group], exc)
            except discord.HTTPException as exc:
                log.info("Upload to %s failed: %s", getattr(target, "id", "?"), exc)
                notes.append(_("The upload failed ({error}); `{command}` retries one file.").format(
                    error=short_error(exc), command=f"{prefix}recordings get <id>"))
            finally:
                for f in files:
                    f.close()
            if progress is not None:
                await progress.update(_("{done}/{messages} messages").format(done=n + 1, messages=len(groups)))
        if notes:
            with contextlib.suppress(discord.HTTPException):
                await send_long(target, "\n".join(notes))

    async def _file(self, rec: Recording, fmt: Format, listen: bool = False) -> tuple[Path, int]:
        if fmt == "opus":
            copy = await self.recorder.compact(rec)
            return copy.path, copy.size
        if listen and _is_flac(rec):
            copy = await self.recorder.listen_mp3(rec)
            return copy.path, copy.size
        return Path(rec.path), rec.size_bytes

    @staticmethod
    def _parts_note(name: str, fmt: Format, count: int, limit: int) -> str:
        if fmt == "mp3":
            stem, _dot, ext = name.rpartition(".")  # .mp3, or .flac (cut between frames as well)
            stem, ext = (stem, ext) if stem else (name, "mp3")
            return _("`{filename}` is over the {limit} upload limit, so it comes in {count} parts that each play on "
                     "their own; `{command}` joins them back into the original file, byte for byte.").format(
                filename=name, limit=human_size(limit), count=count, command=f"cat {stem}.part*.{ext} > {name}")
        return _("`{filename}` is over the {limit} upload limit, so it comes in {count} parts, each a complete Opus "
                 "file: play them in order.").format(filename=name, limit=human_size(limit), count=count)


def _is_flac(rec: Recording) -> bool:
    """A recording of a FLAC meeting (``recordingset archive flac``)."""
    return rec.path.endswith(".flac")


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return path.name


@contextlib.asynccontextmanager
async def _typing(target: discord.abc.Messageable) -> Any:
    """"… is typing" while something slow (an Opus conversion) is prepared; never fails."""
    try:
        cm = target.typing()
        await cm.__aenter__()
    except Exception:  # noqa: BLE001 - cosmetic
        cm = None
    try:
        yield
    finally:
        if cm is not None:
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)
