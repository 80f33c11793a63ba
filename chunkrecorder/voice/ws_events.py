"""Voice-websocket messages that matter to a receiver, from Discord or the harness.

Discord tells each client over the voice websocket (not over UDP) which SSRC is
which user and who comes and goes; audio packets carry only the SSRC. The payloads
(voice gateway v8) this reads:

* op 4 SESSION_DESCRIPTION ``{"mode", "secret_key": [32 ints], ...}``: a (re)connect's key;
* op 5 SPEAKING ``{"user_id": "…", "ssrc": n, "speaking": flags}``: SSRC → user;
* op 9 RESUMED ``{}``: the connection resumed;
* op 11 CLIENTS_CONNECT ``{"user_ids": ["…"]}``: users' clients connected;
* op 12 (client SSRC info) ``{"user_id": "…", "audio_ssrc": n, ...}``: SSRC → user;
* op 13 CLIENT_DISCONNECT ``{"user_id": "…"}``: a user's client left.

discord.py hands every JSON message to a hook after handling it itself
(:mod:`.discord_bridge` installs one); the harness calls :meth:`VoiceWsEvents.handle`
directly with the same dicts. A malformed payload is logged and ignored, never raised.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Optional

from .receiver import VoiceReceiver

log = logging.getLogger("red.chunkrecorder.voice.ws")

SESSION_DESCRIPTION = 4
SPEAKING = 5
RESUMED = 9
CLIENTS_CONNECT = 11
CLIENT_CONNECT = 12
CLIENT_DISCONNECT = 13

_background: set[asyncio.Task[Any]] = set()


def notify(listener: Any, name: str, *args: Any) -> None:
    """Call ``listener.name(*args)`` if it exists; schedule it if it is a coroutine."""
    fn = getattr(listener, name, None) if listener is not None else None
    if fn is None:
        return
    try:
        result = fn(*args)
    except Exception:
        log.exception("Voice event listener %s raised", name)
        return
    if inspect.isawaitable(result):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called off the loop: nobody to run it
            log.warning("Voice event %s dropped: no event loop to run the listener", name)
            if inspect.iscoroutine(result):
                result.close()
            return
        task = asyncio.ensure_future(result, loop=loop)
        _background.add(task)
        task.add_done_callback(_finished)


def _finished(task: "asyncio.Task[Any]") -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("Voice event listener failed", exc_info=task.exception())


class VoiceWsEvents:
    """Applies voice-websocket messages to a receiver and reports them to a listener."""

    def __init__(self, receiver: VoiceReceiver, listener: Optional[Any] = None) -> None:
        self.receiver = receiver
        self.listener = listener
        #: Users whose voice clients are in the call, as far as the websocket said.
        self.members: set[int] = set()

    def handle(self, msg: dict[str, Any]) -> None:
        try:
            self._handle(msg)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("Ignoring malformed voice websocket message %r: %s", msg, exc)

    def _handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        data = msg.get("d") or {}
        if op == SPEAKING:
            user_id, ssrc = int(data["user_id"]), int(data["ssrc"])
            self.receiver.map_ssrc(ssrc, user_id)
            self.members.add(user_id)
            notify(self.listener, "on_speaking", user_id, ssrc, bool(int(data.get("speaking", 0))))
        elif op == CLIENT_CONNECT:
            ssrc = int(data.get("audio_ssrc") or 0)
            if ssrc:
                self.receiver.map_ssrc(ssrc, int(data["user_id"]))
        elif op == CLIENTS_CONNECT:
            for raw in data["user_ids"]:
                user_id = int(raw)
                if user_id not in self.members:
                    self.members.add(user_id)
                    notify(self.listener, "on_member_join", user_id)
        elif op == CLIENT_DISCONNECT:
            user_id = int(data["user_id"])
            self.receiver.forget_user(user_id)
            self.members.discard(user_id)
            notify(self.listener, "on_member_leave", user_id)
        elif op == SESSION_DESCRIPTION:
            key = data.get("secret_key")
            if key:
                self.receiver.set_secret_key(bytes(key))
        elif op == RESUMED:
            notify(self.listener, "on_resume")
