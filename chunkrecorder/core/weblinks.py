"""The cog's download server: its settings, its lifetime, and the links the cog hands out.

The server itself is ``web.WebServer`` (plain aiohttp, shared with the harness); this
is what ties it to the cog. It starts in ``cog_load`` when the owner has turned links
on and stops in ``cog_unload``. A server that cannot start (the port is taken) never
stops the cog: at load the log says why, at ``[p]recordingset web on`` the owner reads
one sentence and the previous state stays.

Names shown on the meeting page come from Discord's cache (members' display names, the
channel's name), read when the page is asked for.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import TYPE_CHECKING, Optional

from ..i18n import _
from ..web import Catalog, Format, LinkSigner, WebServer, WebServerError, new_secret
from .config import SettingsStore, WebConfig
from .errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from ..pipeline.recorder import Recorder

__all__ = ["DiscordNames", "WebLinks", "parse_bind", "parse_base_url"]

log = logging.getLogger("red.chunkrecorder.weblinks")

_DAY_S = 86_400.0


class DiscordNames:
    """The ``web.Names`` of the cog, and the pipeline's ``tagging.NameSource``: display names,
    channel and server names from the bot's cache (None for what it does not hold)."""

    def __init__(self, bot: "Red") -> None:
        self.bot = bot

    def speaker(self, guild_id: int, user_id: int) -> Optional[str]:
        guild = self.bot.get_guild(guild_id)
        member = guild.get_member(user_id) if guild is not None else None
        if member is not None:
            return member.display_name
        user = self.bot.get_user(user_id)
        return user.display_name if user is not None else None

    def channel(self, guild_id: int, channel_id: int) -> Optional[str]:
        guild = self.bot.get_guild(guild_id)
        channel = guild.get_channel(channel_id) if guild is not None else None
        return channel.name if channel is not None else None

    def guild(self, guild_id: int) -> Optional[str]:
        guild = self.bot.get_guild(guild_id)
        return guild.name if guild is not None else None


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) → host and port; ``UserError`` otherwise."""
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65_535:
        raise UserError(_("Give the address to listen on as `HOST:PORT`, for example `127.0.0.1:8080` "
                          "(behind a reverse proxy) or a LAN address like `192.168.1.20:8080`."))
    return host, int(port_text)


def parse_base_url(text: str) -> str:
    """The public address links start with: ``http(s)://host[:port][/prefix]``."""
    url = text.strip().strip("<>")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UserError(_("The public address must look like `https://recordings.example.com` (optionally with "
                          "a path): it is what the links start with."))
    return url.rstrip("/")


class WebLinks:
    """Owns the cog's ``WebServer`` (or its absence) and makes links for messages."""

    def __init__(self, *, bot: "Red", settings: SettingsStore, recorder: "Recorder") -> None:
        self.bot = bot
        self.settings = settings
        self.recorder = recorder
        self.server: Optional[WebServer] = None
        #: Why the server is not running although it is on (shown by ``[p]recordingset web``).
        self.problem: Optional[str] = None

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.running

    def _build(self, web: WebConfig) -> WebServer:
        signer = LinkSigner(bytes.fromhex(web.secret), retired=web.retired)
        return WebServer(Catalog(self.recorder, DiscordNames(self.bot)), signer, host=web.host, port=web.port,
                         base_url=web.base_url or f"http://{web.host}:{web.port}")

    async def start_if_configured(self) -> None:
        """At load: start the server if the owner turned it on; a failure is logged, never raised."""
        web = await self.settings.web()
        if not web.enabled or not web.secret:
            return
        server = self._build(web)
        try:
            await server.start()
        except WebServerError as exc:
            self.problem = str(exc)
            log.error("Download links are on but the server could not start: %s", exc)
            return
        self.server, self.problem = server, None

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def config(self) -> WebConfig:
        return await self.settings.web()

    async def enable(self, host: str, port: int, base_url: str) -> WebConfig:
        """Start a server on ``host:port`` (replacing a running one); saved only once it listens."""
        current = await self.settings.web()
        web = WebConfig(enabled=True, host=host, port=port, base_url=base_url,
                        secret=current.secret or new_secret(), retired=current.retired)
        if self.server is not None and (self.server.host, self.server.port) == (host, port):
            await self.close()  # the same address: free it for the new server
        server = self._build(web)
        try:
            await server.start()
        except WebServerError as exc:
            raise UserError(str(exc)) from None
        await self.close()
        self.server, self.problem = server, None
        await self.settings.set_web(web)
        return web

    async def disable(self) -> None:
        web = await self.settings.web()
        await self.close()
        self.problem = None
        await self.settings.set_web(WebConfig(enabled=False, host=web.host, port=web.port, base_url=web.base_url,
                                              secret=web.secret, retired=web.retired))

    async def rotate(self) -> WebConfig:
        """A new secret: every link made so far stops working (and says it was revoked)."""
        web = await self.settings.web()
        kids = list(web.retired)
        if web.secret:
            kids.append(LinkSigner(bytes.fromhex(web.secret)).kid)
        retired = tuple(dict.fromkeys(kids))[-50:]  # the last 50 keys' links say "revoked"
        rotated = WebConfig(enabled=web.enabled, host=web.host, port=web.port, base_url=web.base_url,
                            secret=new_secret(), retired=retired)
        await self.settings.set_web(rotated)
        if self.server is not None:
            self.server.signer = LinkSigner(bytes.fromhex(rotated.secret), retired=rotated.retired)
        return rotated

    # ------------------------------------------------------------------ links
    def meeting_link(self, meeting_id: str, *, days: int, fmt: Format = "mp3") -> Optional[str]:
        """A link to the meeting's page, or None while the server is not running."""
        if not self.running or self.server is None:
            return None
        return self.server.link("m", meeting_id, ttl_s=days * _DAY_S, fmt=fmt)

    def recording_link(self, recording_id: str, *, days: int, fmt: Format = "mp3") -> Optional[str]:
        if not self.running or self.server is None:
            return None
        return self.server.link("r", recording_id, ttl_s=days * _DAY_S, fmt=fmt)
