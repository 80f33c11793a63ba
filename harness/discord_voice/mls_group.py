"""One voice channel's DAVE group as Discord's voice server runs it, with a real bot in it.

The fake voice server plays two parts here, as :mod:`harness.wire.mls` does for the
offline harness: Discord's voice server (the MLS *external sender*, which signs Add and
Remove proposals and sequences transitions) and the fake members' clients (real
``davey`` sessions that commit, welcome and encrypt). The bot is the one member that is
remote: its session lives in discord.py's ``VoiceConnectionState`` and is reached only
through the voice websocket, with the opcodes a real voice server uses:

* the bot joins (its key package, op 26): a local member commits an Add proposal, the
  bot gets op 30 WELCOME with a transition id, answers op 23 READY, the local members
  move to the new epoch and op 22 EXECUTE_TRANSITION follows;
* a member joins or leaves while the bot is in the group: op 27 PROPOSALS go to the bot
  (discord.py commits too, op 28, and the server announces the local committer's commit
  instead, as a real server picks one), op 29 ANNOUNCE_COMMIT, op 23, then op 22;
* a downgrade to protocol 0: op 21 PREPARE_TRANSITION (version 0), op 23, op 22, and the
  members stop encrypting; an upgrade: op 24 PREPARE_EPOCH (epoch 1), op 25 and a fresh
  group that welcomes everyone, op 23, op 22.

Local members switch to a new epoch only once the bot said READY, as clients switch
keys at the transition's execution, so nothing encrypted for an epoch the bot cannot
have is sent. What is simplified: a member whose client reconnects keeps its leaf; the
group is made by the first local member (a bot alone in a call is never the group's
creator); the external sender never changes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Optional, Protocol

import davey

from harness.wire.mls import ExternalSender, vl

from .protocol import Op

__all__ = ["BotLink", "ChannelDave"]

log = logging.getLogger("harness.discord_voice.mls")

DAVE_VERSION = 1
#: How long the server waits for the bot's op 23 before giving up on a transition.
READY_TIMEOUT_S = 5.0


class BotLink(Protocol):
    """What the group needs from the bot's voice websocket session."""

    async def send_json(self, op: int, data: dict[str, Any]) -> None: ...

    async def send_binary(self, op: int, payload: bytes) -> None: ...

    def expect_ready(self, transition_id: int) -> "asyncio.Future[None]": ...


class ChannelDave:
    """The MLS group of one channel: local members' sessions, the remote bot, transitions."""

    def __init__(self, channel_id: int, *, enabled: bool = True) -> None:
        self.channel_id = channel_id
        self.group_id = channel_id.to_bytes(8, "big")
        self.external_sender = ExternalSender()
        self.package = self.external_sender.package()
        #: 0 while the call is not end-to-end encrypted (never was, or downgraded).
        self.protocol_version = DAVE_VERSION if enabled else 0
        self.members: dict[int, Any] = {}  # user id -> davey session in the group
        self.leaves: dict[int, int] = {}  # leaf index -> user id (the bot included)
        self.bot_user_id: Optional[int] = None
        #: The bot holds the current epoch's keys: encrypted media can reach it.
        self.bot_has_epoch = False
        #: Members encrypt (False between an upgrade's start and its transition).
        self.encrypting = True
        #: Seconds the next welcome of the bot waits (a slow voice server; see
        #: FakeDiscordVoiceServer.delay_next_welcome).
        self.welcome_delay_s = 0.0
        #: Held by anyone touching a member's session (the media thread encrypts with them).
        self.sessions_lock = threading.Lock()
        self._ops = asyncio.Lock()
        self._transition = 0
        self.transitions: list[tuple[str, int]] = []  # (what, transition id) for tests

    # ------------------------------------------------------------------ state
    @property
    def enabled(self) -> bool:
        return self.protocol_version > 0

    @property
    def epoch(self) -> int:
        committer = self._committer()
        return int(committer.epoch or 0) if committer is not None else 0

    def session_for(self, user_id: int) -> Any:
        """The member's session to encrypt with, or None (not in the group, or protocol 0)."""
        return self.members.get(user_id) if self.enabled and self.encrypting else None

    def _committer(self) -> Any:
        return next(iter(self.members.values()), None)

    def _next_transition(self) -> int:
        self._transition = self._transition % 0xFFFF + 1
        return self._transition

    def _new_session(self, user_id: int) -> Any:
        session = davey.DaveSession(DAVE_VERSION, user_id, self.channel_id)
        session.set_external_sender(self.package)
        return session

    def _place(self, user_ids: list[int]) -> None:
        """MLS fills the leftmost blank leaves, in proposal order."""
        leaf = 0
        for uid in user_ids:
            while leaf in self.leaves:
                leaf += 1
            self.leaves[leaf] = uid

    def _leaf_of(self, user_id: int) -> Optional[int]:
        return next((leaf for leaf, uid in self.leaves.items() if uid == user_id), None)

    # ------------------------------------------------------------------ local members
    async def add_members(self, user_ids: list[int], bot: Optional[BotLink]) -> None:
        """Members' clients join the group (in one commit); with the bot in the group it
        takes part through op 27/29/23/22. Returns once they may encrypt."""
        async with self._ops:
            await self._add_members(user_ids, bot)

    async def _add_members(self, user_ids: list[int], bot: Optional[BotLink]) -> None:
        if not self.enabled:
            return
        fresh = {uid: self._new_session(uid) for uid in user_ids if uid not in self.members}
        if not fresh:
            return
        if not self.members:
            # The first members: one of them makes the group and adds the others.
            first_uid, first = next(iter(fresh.items()))
            with self.sessions_lock:
                self.members[first_uid] = first
            self._place([first_uid])
            del fresh[first_uid]
            if not fresh:
                return  # a group of one: encrypting needs an established epoch
        packages = [s.get_serialized_key_package() for s in fresh.values()]
        proposals = self.external_sender.proposals_payload(self.group_id, self.epoch, packages)
        await self._commit(proposals, bot, welcome_local=fresh)
        self._place(list(fresh))

    async def remove_member(self, user_id: int, bot: Optional[BotLink]) -> None:
        """A member's client left: the server proposes its removal; a new epoch follows."""
        async with self._ops:
            if not self.enabled or user_id not in self.members:
                return
            leaf = self._leaf_of(user_id)
            with self.sessions_lock:
                self.members.pop(user_id)
            if leaf is None:
                return
            del self.leaves[leaf]
            if not self.members:
                self.leaves.clear()
                return
            proposals = self.external_sender.removals_payload(self.group_id, self.epoch, [leaf])
            await self._commit(proposals, bot)

    async def _commit(self, proposals: bytes, bot: Optional[BotLink], *,
                      welcome_local: Optional[dict[int, Any]] = None) -> None:
        """A local member commits ``proposals``; everyone in the group follows."""
        append = davey.ProposalsOperationType.append
        committer = self._committer()
        with self.sessions_lock:
            result = committer.process_proposals(append, proposals)
            if result is None:
                raise RuntimeError("the committing member made no commit")
            others = [s for s in self.members.values() if s is not committer]
            for session in others:
                session.process_proposals(append, proposals)
        with_bot = bot is not None and self.bot_has_epoch
        tid = self._next_transition() if with_bot else 0
        if with_bot and bot is not None:
            ready = bot.expect_ready(tid)
            await bot.send_binary(Op.MLS_PROPOSALS, bytes([0]) + proposals)
            await bot.send_binary(Op.MLS_ANNOUNCE_COMMIT_TRANSITION, tid.to_bytes(2, "big") + result.commit)
            await self._await_ready(ready, tid)
        with self.sessions_lock:
            for session in [committer, *others]:
                session.process_commit(result.commit)
            for uid, session in (welcome_local or {}).items():
                session.process_welcome(result.welcome)
                self.members[uid] = session
        if with_bot and bot is not None:
            await bot.send_json(Op.DAVE_EXECUTE_TRANSITION, {"transition_id": tid})
            self.transitions.append(("commit", tid))

    async def _await_ready(self, ready: "asyncio.Future[None]", tid: int) -> None:
        try:
            await asyncio.wait_for(ready, READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("The bot never said it was ready for transition %d", tid)

    # ------------------------------------------------------------------ the bot
    async def bot_joins(self, user_id: int, key_package: bytes, bot: BotLink) -> None:
        """The bot's key package (op 26) arrived: welcome it into the group."""
        async with self._ops:
            if not self.enabled:
                return
            await self._drop_bot_leaf()
            self.bot_user_id = user_id
            if len(self.members) == 0:
                return  # nobody to commit: the bot waits alone (see the module docstring)
            proposals = self.external_sender.proposals_payload(self.group_id, self.epoch, [key_package])
            append = davey.ProposalsOperationType.append
            committer = self._committer()
            with self.sessions_lock:
                result = committer.process_proposals(append, proposals)
                others = [s for s in self.members.values() if s is not committer]
                for session in others:
                    session.process_proposals(append, proposals)
            if result is None or result.welcome is None:
                raise RuntimeError("adding the bot produced no welcome")
            if self.welcome_delay_s:
                delay, self.welcome_delay_s = self.welcome_delay_s, 0.0
                await asyncio.sleep(delay)  # members keep talking under the old epoch meanwhile
            tid = self._next_transition()
            ready = bot.expect_ready(tid)
            await bot.send_binary(Op.MLS_WELCOME, tid.to_bytes(2, "big") + result.welcome)
            await self._await_ready(ready, tid)
            with self.sessions_lock:
                for session in [committer, *others]:
                    session.process_commit(result.commit)
            self._place([user_id])
            self.bot_has_epoch = True
            self.encrypting = True
            await bot.send_json(Op.DAVE_EXECUTE_TRANSITION, {"transition_id": tid})
            self.transitions.append(("welcome", tid))

    async def bot_leaves(self) -> None:
        """The bot's voice session ended: its leaf is removed (a new epoch, locally)."""
        async with self._ops:
            self.bot_has_epoch = False
            await self._drop_bot_leaf()

    async def _drop_bot_leaf(self) -> None:
        if self.bot_user_id is None:
            return
        leaf = self._leaf_of(self.bot_user_id)
        if leaf is None:
            return
        del self.leaves[leaf]
        if self.members:
            proposals = self.external_sender.removals_payload(self.group_id, self.epoch, [leaf])
            await self._commit(proposals, None)

    # ------------------------------------------------------------------ protocol transitions
    async def downgrade(self, bot: Optional[BotLink]) -> None:
        """The call stops being end-to-end encrypted (op 21 to version 0, op 23, op 22)."""
        async with self._ops:
            if not self.enabled:
                return
            tid = self._next_transition()
            if bot is not None:
                ready = bot.expect_ready(tid)
                await bot.send_json(Op.DAVE_PREPARE_TRANSITION, {"transition_id": tid, "protocol_version": 0})
                await self._await_ready(ready, tid)
            with self.sessions_lock:
                self.protocol_version = 0
                self.members.clear()
                self.leaves.clear()
                self.bot_has_epoch = False
            if bot is not None:
                await bot.send_json(Op.DAVE_EXECUTE_TRANSITION, {"transition_id": tid})
            self.transitions.append(("downgrade", tid))

    async def upgrade(self, user_ids: list[int], bot: Optional[BotLink]) -> None:
        """Back to DAVE: the members form a new group, op 24 (epoch 1) tells the bot to
        start over, and its new key package (op 26) reaches :meth:`bot_joins`. Members
        keep sending unencrypted until the bot's welcome transition executes."""
        async with self._ops:
            if self.enabled:
                return
            self.protocol_version = DAVE_VERSION
            self.encrypting = bot is None
            await self._add_members(user_ids, None)
            self.transitions.append(("upgrade", 0))
            if bot is not None:
                await bot.send_json(Op.DAVE_PREPARE_EPOCH, {"epoch": 1, "protocol_version": DAVE_VERSION})
                await bot.send_binary(Op.MLS_EXTERNAL_SENDER, self.package)


def proposals_vector(messages: list[bytes]) -> bytes:
    """Op 27's payload from single proposal messages (for tests that build their own)."""
    return vl(b"".join(messages))
