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

Discord tells a client who is here and whose SSRC is whose right after READY, before
SESSION_DESCRIPTION brings the key the receiver is built with. So ``VoiceWsEvents`` can
exist before its receiver: messages that map SSRCs or announce members are kept (up
to :data:`EARLY_LIMIT`) and replayed, in order, by :meth:`VoiceWsEvents.attach`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from typing import Any, Awaitable, Optional

from ..utils.background import BackgroundTasks
from .receiver import VoiceReceiver

log = logging.getLogger("red.chunkrecorder.voice.ws")

SESSION_DESCRIPTION = 4
SPEAKING = 5
RESUMED = 9
CLIENTS_CONNECT = 11
CLIENT_CONNECT = 12
CLIENT_DISCONNECT = 13
#: Messages kept for a receiver that does not exist yet (a call's worth of members).
EARLY_LIMIT = 2048
_EARLY_OPS = frozenset({SPEAKING, CLIENT_CONNECT, CLIENTS_CONNECT, CLIENT_DISCONNECT})

#: Listener coroutines run as tasks here: referenced until they end, their failures logged.
_listener_tasks = BackgroundTasks("voice events")


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
        _listener_tasks.spawn(_awaited(result), name=f"chunkrecorder-voice-{name}", loop=loop)


async def _awaited(awaitable: Awaitable[Any]) -> None:
    await awaitable


class VoiceWsEvents:
    """Applies voice-websocket messages to a receiver and reports them to a listener.

    ``report_resumed``: tell the listener ``on_resume(0.0)`` on op 9 RESUMED (the harness's
    fake link); the discord.py link reports resumes itself, with the outage.
    """

    def __init__(self, receiver: Optional[VoiceReceiver], listener: Optional[Any] = None, *,
                 report_resumed: bool = True) -> None:
        self.receiver = receiver
        self.listener = listener
        self.report_resumed = report_resumed
        #: Users whose voice clients are in the call, as far as the websocket said.
        self.members: set[int] = set()
        self._early: deque[dict[str, Any]] = deque(maxlen=EARLY_LIMIT)

    def attach(self, receiver: VoiceReceiver) -> None:
        """The receiver exists now: replay what arrived before it, in order."""
        self.receiver = receiver
        early, self._early = list(self._early), deque(maxlen=EARLY_LIMIT)
        for msg in early:
            self.handle(msg)

    def handle(self, msg: dict[str, Any]) -> None:
        if self.receiver is None:
            if msg.get("op") in _EARLY_OPS:
                if len(self._early) == EARLY_LIMIT:
                    log.warning("Too many voice websocket messages before the session key; the oldest is dropped")
                self._early.append(msg)
            return
        try:
            self._handle(msg, self.receiver)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("Ignoring malformed voice websocket message %r: %s", msg, exc)

    def _handle(self, msg: dict[str, Any], receiver: VoiceReceiver) -> None:
        op = msg.get("op")
        data = msg.get("d") or {}
        if op == SPEAKING:
            user_id, ssrc = int(data["user_id"]), int(data["ssrc"])
            receiver.map_ssrc(ssrc, user_id)
            self.members.add(user_id)
            notify(self.listener, "on_speaking", user_id, ssrc, bool(int(data.get("speaking", 0))))
        elif op == CLIENT_CONNECT:
            ssrc = int(data.get("audio_ssrc") or 0)
            if ssrc:
                receiver.map_ssrc(ssrc, int(data["user_id"]))
        elif op == CLIENTS_CONNECT:
            for raw in data["user_ids"]:
                user_id = int(raw)
                if user_id not in self.members:
                    self.members.add(user_id)
                    notify(self.listener, "on_member_join", user_id)
        elif op == CLIENT_DISCONNECT:
            user_id = int(data["user_id"])
            receiver.forget_user(user_id)
            self.members.discard(user_id)
            notify(self.listener, "on_member_leave", user_id)
        elif op == SESSION_DESCRIPTION:
            key = data.get("secret_key")
            if key:
                receiver.set_secret_key(bytes(key))
        elif op == RESUMED and self.report_resumed:
            notify(self.listener, "on_resume", 0.0)
