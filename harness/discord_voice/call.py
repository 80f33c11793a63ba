"""One voice channel on the fake voice server: its members, its DAVE group, the bot's session.

The media thread calls :meth:`FakeCall.step` every 20 ms; everything the bot's
connection does (attach, detach, key changes, DAVE) happens on the event loop. The two
meet under ``dave.sessions_lock`` (members' davey sessions) and through plain attribute
reads of the current session (one assignment, atomic in Python).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from harness.impairments import Fate
from harness.network import OpusCache
from harness.scenario import SpeakerPlan
from harness.sources import Source
from harness.wire import RtpSealer, WireGroup

from .members import LiveMember
from .mls_group import ChannelDave
from .protocol import Op

if TYPE_CHECKING:
    from .server import FakeDiscordVoiceServer
    from .session import BotSession

__all__ = ["FakeCall"]

log = logging.getLogger("harness.discord_voice.call")


class FakeCall:
    """A voice channel's call as the voice server sees it."""

    def __init__(self, server: "FakeDiscordVoiceServer", guild_id: int, channel_id: int, *,
                 dave: bool, seed: int, opus: OpusCache, greeting_delay_frames: int = 0) -> None:
        self.server = server
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.group = WireGroup(channel_id=channel_id, seed=seed, dave=False)
        self.dave = ChannelDave(channel_id, enabled=dave)
        self._opus = opus
        self.members: dict[int, LiveMember] = {}
        self.session: Optional["BotSession"] = None
        self.sessions: list["BotSession"] = []
        #: Delay the SPEAKING that greets a newly connected bot until this many of each
        #: member's packets have been sent to it ("SPEAKING 20 packets late").
        self.greeting_delay_frames = greeting_delay_frames
        self._greeting: list[tuple[Optional[int], "BotSession", dict[str, Any]]] = []
        self.frame = 0
        self.sent_to_bot = 0

    # ------------------------------------------------------------------ members
    def add_speaker(self, user_id: int, source: Source, *, speaking_delay_frames: int = 0,
                    **plan: Any) -> LiveMember:
        """A member who says ``source``; keywords are :class:`harness.scenario.SpeakerPlan`'s."""
        if user_id in self.members:
            raise ValueError(f"user {user_id} is already in the call")
        p = SpeakerPlan(user_id=user_id, source=source, **plan)
        if p.join_frame < self.frame:
            raise ValueError(f"{p.name} would join in the past")
        member = LiveMember(p, self.group.add_speaker(user_id), self._opus,
                            speaking_delay_frames=speaking_delay_frames)
        self.members[user_id] = member
        return member

    def present(self) -> list[LiveMember]:
        return [m for m in self.members.values() if m.present()]

    def fates(self, user_id: int, frames: Optional[int] = None) -> np.ndarray:
        m = self.members[user_id]
        n = self.frame if frames is None else frames
        out = np.zeros(n, dtype=np.uint8)
        k = min(n, len(m.fates))
        out[:k] = np.frombuffer(bytes(m.fates[:k]), dtype=np.uint8)
        return out

    def spoke(self, user_id: int, frames: Optional[int] = None) -> np.ndarray:
        """Per frame: the member's client sent audio (delivered to the bot or not)."""
        m = self.members[user_id]
        n = self.frame if frames is None else frames
        out = np.zeros(n, dtype=bool)
        k = min(n, len(m.spoke))
        out[:k] = np.frombuffer(bytes(m.spoke[:k]), dtype=np.uint8).astype(bool)
        return out

    def ssrcs(self, user_id: int) -> list[tuple[int, int]]:
        return list(self.members[user_id].ssrcs)

    # ------------------------------------------------------------------ the bot's session
    async def attach(self, session: "BotSession", *, resumed: bool = False) -> None:
        """``session`` is the bot's connection now; an older one is over (its DAVE leaf goes)."""
        old, self.session = self.session, session
        self.sessions.append(session)
        if old is not None and old is not session and not resumed:
            old.media_ready = False
            await self.dave.bot_leaves()

    async def detach(self, session: "BotSession") -> None:
        if self.session is session:
            self.session = None
            await self.dave.bot_leaves()

    def use_key(self, key: bytes) -> None:
        """The bot's new transport key: every datagram from now on is sealed with it."""
        self.group.sealer = RtpSealer(key)

    async def greet(self, session: "BotSession") -> None:
        """What the voice server tells a client right after READY: who is here (op 11) and
        whose SSRC is whose (op 5), before the session description."""
        present = self.present()
        if not present:
            return
        await session.send_json(Op.CLIENTS_CONNECT, {"user_ids": [str(m.user_id) for m in present]})
        for m in present:
            if self.greeting_delay_frames:
                self._greeting.append((None, session, m.speaking_event()))  # due once media flows
            else:
                await session.send_json(Op.SPEAKING, m.speaking_event()["d"])

    # ------------------------------------------------------------------ the media thread
    def step(self, k: int) -> None:
        """Frame ``k`` of every member: relay their websocket messages, send their datagrams."""
        self.frame = k + 1
        session = self.session
        live = session is not None and not session.closed and not session.stalled
        deliver = live and session is not None and session.media_ready and session.addr is not None
        udp = session.endpoint.udp if session is not None else None
        if self._greeting:
            self._greeting = [(k + self.greeting_delay_frames if at is None and s.media_ready else at, s, msg)
                              for at, s, msg in self._greeting]
            due = [(s, msg) for at, s, msg in self._greeting if at is not None and at <= k]
            self._greeting = [(at, s, msg) for at, s, msg in self._greeting if at is None or at > k]
            for s, msg in due:
                if s is session and live:
                    s.send_soon(msg["op"], msg["d"])
        dave = self.dave
        with dave.sessions_lock:
            for member in self.members.values():
                davey_session = dave.session_for(member.user_id)
                ready = davey_session is not None and bool(davey_session.ready)
                plain = not dave.enabled or not dave.encrypting
                member.wire.dave = davey_session if ready and not plain else None
                out = member.step(k, can_send=lambda: plain or ready)
                for msg in out.messages:
                    if live and session is not None:
                        session.send_soon(msg["op"], msg["d"])
                if out.joined and dave.enabled:
                    self.server.spawn_threadsafe(dave.add_members([member.user_id], session if live else None))
                if out.left and dave.enabled:
                    self.server.spawn_threadsafe(dave.remove_member(member.user_id, session if live else None))
                fate = Fate.NOT_SENT
                if out.datagram is not None and deliver and udp is not None and session is not None:
                    assert session.addr is not None
                    udp.send(out.datagram, session.addr)
                    self.sent_to_bot += 1
                    if out.audio:
                        encrypted = member.wire.dave is not None
                        fate = Fate.DELIVERED if (not encrypted or dave.bot_has_epoch) else Fate.LOST
                if out.rtcp is not None and deliver and udp is not None and session is not None:
                    assert session.addr is not None
                    udp.send(out.rtcp, session.addr)
                if member.joined:
                    member.log(k, fate, spoke=out.audio)
