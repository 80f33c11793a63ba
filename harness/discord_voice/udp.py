"""The voice server's UDP side: IP discovery answers and media out, on plain threads.

A real voice server's media does not wait for anybody's event loop, and neither does
this one: the socket is a blocking one read by its own thread (which answers IP
discovery, the only thing a receive-only bot sends), and the media thread writes to
it directly (``sendto`` is thread-safe). discord.py ``connect()``s its socket to the
address READY named, so media must come from this very socket.

IP discovery is answered after ``discovery_delay_s`` (10 ms), a network's round trip:
discord.py 2.7.1 sends its request *before* it registers the listener for the reply
(``DiscordVoiceWebSocket.discover_ip``), so a reply in microseconds, as localhost gives,
can reach the reader thread first and be lost, and the handshake hangs. On a real
network the reply takes milliseconds; answering at once would test a race Discord's
network never runs.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Optional

from .protocol import discovery_response, parse_discovery

__all__ = ["MediaSocket"]

log = logging.getLogger("harness.discord_voice.udp")


class MediaSocket:
    """One voice server's UDP port on localhost."""

    def __init__(self, host: str = "127.0.0.1", *, discovery_delay_s: float = 0.01) -> None:
        self.discovery_delay_s = discovery_delay_s
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self.discoveries: list[tuple[int, tuple[str, int]]] = []  # (ssrc, client address)
        self.received_other = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._read, name=f"fake-voice-udp:{self.port}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            ssrc = parse_discovery(data)
            if ssrc is None:
                self.received_other += 1
                continue
            self.discoveries.append((ssrc, addr))
            reply = threading.Timer(self.discovery_delay_s, self._answer, (ssrc, addr))
            reply.daemon = True
            reply.start()

    def _answer(self, ssrc: int, addr: tuple[str, int]) -> None:
        try:
            self._sock.sendto(discovery_response(ssrc, addr[0], addr[1]), addr)
        except OSError:
            log.debug("IP discovery answer to %s failed", addr, exc_info=True)

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        try:
            self._sock.sendto(data, addr)
        except OSError:
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._sock.close()
