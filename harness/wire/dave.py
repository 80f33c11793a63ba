"""A real DAVE group, built locally: the bot and every speaker are ``davey`` sessions.

Chosen over a stand-in because it can be done: ``davey`` 0.1.7 only needs an MLS
*external sender* (Discord's voice server) to sign Add proposals, and
:mod:`.mls` plays that part. The group is then exactly what a bot meets on Discord:
the bot's session commits the proposals (as one member does on Discord), speakers
join from the welcome, everyone processes the commit, and each speaker's
``encrypt_opus`` produces real DAVE frames that the bot's session decrypts through
the cog's own :class:`chunkrecorder.voice.dave.DaveyDecryptor`. Adding a speaker
later starts a new epoch, as a join does on Discord, so key rotation is exercised too.

What is simplified: the voice server's transition handshake (ops 21-24, 29) is
collapsed into direct calls, a reconnecting speaker keeps its session, and members
who leave are not removed from the group (the receiver never needs that).
Signing keys and MLS secrets come from ``davey``'s own RNG, so DAVE ciphertexts differ
between runs; everything observable (which packets arrive, what they decode to) is
seeded.
"""

from __future__ import annotations

import threading
from typing import Any

import davey

from .mls import ExternalSender

DAVE_VERSION = 1


class DaveGroup:
    """One voice channel's MLS group: the bot's session plus one session per speaker."""

    def __init__(self, *, channel_id: int, bot_user_id: int) -> None:
        self.channel_id = channel_id
        self.group_id = channel_id.to_bytes(8, "big")
        self.external_sender = ExternalSender()
        self._package = self.external_sender.package()
        self.bot = self._new_session(bot_user_id)
        self.members: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _new_session(self, user_id: int) -> Any:
        session = davey.DaveSession(DAVE_VERSION, user_id, self.channel_id)
        session.set_external_sender(self._package)
        return session

    @property
    def epoch(self) -> int:
        return int(self.bot.epoch or 0)

    def add_members(self, user_ids: list[int]) -> dict[int, Any]:
        """Add speakers in one commit (one new epoch); returns their sessions."""
        with self._lock:
            fresh = {uid: self._new_session(uid) for uid in user_ids if uid not in self.members}
            if not fresh:
                return {uid: self.members[uid] for uid in user_ids}
            proposals = self.external_sender.proposals_payload(
                self.group_id, self.epoch, [s.get_serialized_key_package() for s in fresh.values()]
            )
            append = davey.ProposalsOperationType.append
            result = self.bot.process_proposals(append, proposals)
            if result is None or result.welcome is None:
                raise RuntimeError("the bot's DAVE session made no commit for the new members")
            for existing in self.members.values():
                existing.process_proposals(append, proposals)  # they store the proposals...
                existing.process_commit(result.commit)  # ...that the announced commit references
            for session in fresh.values():
                session.process_welcome(result.welcome)
            self.bot.process_commit(result.commit)  # the voice server announces the bot's own commit
            self.members.update(fresh)
            return {uid: self.members[uid] for uid in user_ids}

    def add_member(self, user_id: int) -> Any:
        return self.add_members([user_id])[user_id]
