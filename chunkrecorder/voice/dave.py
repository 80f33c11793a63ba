"""The DAVE (end-to-end) layer between transport decryption and Opus.

discord.py 2.7.1 runs the whole MLS handshake itself: its voice websocket handles
ops 21-31 and keeps a ``davey.DaveSession`` on the connection state
(``VoiceConnectionState.dave_session``) together with ``dave_protocol_version``
(0 = the call is not end-to-end encrypted, e.g. after a downgrade). It only ever
*encrypts* with it; receiving is ours: after transport decryption each frame goes
through ``session.decrypt(user_id, MediaType.audio, frame)``.

What passes through untouched, as libdave/davey define it:

* everything while the connection has no session or protocol version 0 (except a
  frame with the DAVE trailer the session can still open: one encrypted just before a
  downgrade executed, still in flight);
* the Opus silence frame ``F8 FF FE``, which senders never encrypt;
* unencrypted frames while davey's per-user decryptor is in passthrough mode (during
  protocol transitions, for ~10 s after an upgrade); davey decides that itself;
* unencrypted frames from a user the session has no decryptor for yet and while the
  session is not ready (first join, before the welcome);
* unencrypted frames while the call comes back from protocol 0: between the bot's
  welcome into the new group and the upgrade's execution, members still send clear
  frames, and davey only passes them once discord.py enables passthrough at execution.

Anything else that fails (a frame with the DAVE trailer that cannot be opened, an
unencrypted frame when passthrough is off, a replayed frame) is dropped: ``None``.
Note davey refuses a frame it has already decrypted, so duplicates must be filtered
*before* this layer (the receiver does).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol, runtime_checkable

log = logging.getLogger("red.chunkrecorder.voice.dave")

OPUS_SILENCE = b"\xf8\xff\xfe"
#: Every DAVE-encrypted frame ends with this two-byte magic marker.
DAVE_MAGIC = b"\xfa\xfa"


@runtime_checkable
class DaveDecryptor(Protocol):
    """The one interface over the DAVE layer (real davey, or none)."""

    def decrypt(self, user_id: int, frame: bytes) -> bytes | None:
        """The Opus frame inside ``frame``, or ``None`` to drop it."""
        ...


def looks_encrypted(frame: bytes) -> bool:
    """Whether a frame carries the DAVE trailer (supplemental data ending in 0xFAFA)."""
    return len(frame) > 11 and frame.endswith(DAVE_MAGIC)


class PassthroughDecryptor:
    """For calls without end-to-end encryption: every frame is already Opus."""

    def decrypt(self, user_id: int, frame: bytes) -> bytes | None:
        return frame


class DaveyDecryptor:
    """:class:`DaveDecryptor` over a live ``davey.DaveSession``.

    The session and protocol version are read through callables on every frame
    because discord.py replaces or re-initialises the session on reconnects and
    transitions; holding the object would decrypt with a stale group.
    ``davey`` sessions may be used from the socket thread while the event loop
    processes MLS messages: pyo3 serialises the calls under the GIL.
    """

    def __init__(
        self,
        session: Callable[[], Any],
        protocol_version: Callable[[], int] | None = None,
        upgrading: Callable[[], bool] | None = None,
    ) -> None:
        import davey  # imported here so the cog's setup() can explain a missing davey

        self._audio = davey.MediaType.audio
        self._session = session
        self._protocol_version = protocol_version
        #: The call is coming back from protocol 0 (discord.py's ``dave_downgraded``,
        #: cleared when the upgrade's transition executes): members still send clear
        #: frames until then, although the new group may already be ready here.
        self._upgrading = upgrading
        self.failures = 0

    @classmethod
    def for_session(cls, session: Any) -> "DaveyDecryptor":
        """A decryptor bound to one fixed session (the harness and tests)."""
        return cls(lambda: session, lambda: session.protocol_version)

    def decrypt(self, user_id: int, frame: bytes) -> bytes | None:
        session = self._session()
        if session is None:
            return frame
        if self._protocol_version is not None and self._protocol_version() == 0:
            # Downgraded: frames are plain Opus, except those a sender encrypted just
            # before the transition executed, still in flight; open those if we can.
            if looks_encrypted(frame):
                try:
                    return bytes(session.decrypt(user_id, self._audio, frame))
                except Exception:
                    pass
            return frame
        if frame == OPUS_SILENCE:
            return frame
        try:
            return bytes(session.decrypt(user_id, self._audio, frame))
        except Exception as exc:  # davey raises ValueError; a pyo3 borrow clash RuntimeError
            if not looks_encrypted(frame) and (not session.ready or (self._upgrading is not None and self._upgrading())):
                return frame
            self.failures += 1
            if self.failures <= 5 or self.failures % 500 == 0:
                log.info("DAVE decrypt failed for user %s (%d so far): %s", user_id, self.failures, exc)
            return None
