"""Download links as capabilities: whoever holds the link may fetch that one thing until it expires.

A link names what it opens (a recording or a meeting, by id: never a path), when it
stops working, and an HMAC-SHA256 over both with the bot's link secret (32 random
bytes in Red's Config, made when the owner turns links on). Nothing about a link is
stored: the server checks the MAC (``hmac.compare_digest``, constant time) and the
expiry, then looks the id up, so a link cannot be guessed (128 bits of MAC) and
cannot be stretched to another id or a later date.

Revocation without a list of links: deleting a recording or meeting makes its links
answer 410; rotating the secret makes every link so far answer 410 too, because each
link carries the id of the key that signed it (a hash of the secret, not the secret)
and the ids of retired keys are kept. A link whose MAC does not verify under the
current key is forged (403).

The token, one path segment: ``<expiry, unix seconds>.<key id>.<MAC, base64url>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

__all__ = [
    "Kind",
    "Refusal",
    "Verified",
    "LinkRefused",
    "LinkSigner",
    "key_id",
    "new_secret",
]

#: ``m``: a meeting (its page, its tracks, its zip); ``r``: one recording.
Kind = Literal["m", "r"]

_DOMAIN = b"chunkrecorder link v1"
_MAC_BYTES = 16


Refusal = Literal["forged", "revoked", "expired", "deleted"]


class LinkRefused(Exception):
    """A link the server will not honour: ``status`` is the HTTP answer, ``reason`` why
    (the server words it for the reader)."""

    STATUS: dict[str, int] = {"forged": 403, "revoked": 410, "expired": 410, "deleted": 410}

    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason)
        self.reason: Refusal = reason
        self.status = self.STATUS[reason]


def new_secret() -> str:
    """A fresh link secret, hex (what Config stores)."""
    return secrets.token_hex(32)


def key_id(secret: bytes) -> str:
    """A short public name of a secret: tells links of a retired key from forged ones."""
    digest = hashlib.sha256(b"chunkrecorder key id\x00" + secret).digest()
    return base64.urlsafe_b64encode(digest[:6]).decode("ascii")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Verified:
    kind: Kind
    ident: str
    expires: int


class LinkSigner:
    """Makes and checks links under one secret; ``retired`` are key ids of earlier secrets."""

    def __init__(self, secret: bytes, *, retired: Iterable[str] = (),
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("a link secret needs at least 16 bytes")
        self._secret = secret
        self.kid = key_id(secret)
        self.retired = frozenset(retired) - {self.kid}
        self.clock = clock

    def _mac(self, kind: Kind, ident: str, expires: int) -> bytes:
        message = b"\x00".join([_DOMAIN, kind.encode(), ident.encode(), str(expires).encode()])
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def token(self, kind: Kind, ident: str, expires: int) -> str:
        return f"{int(expires)}.{self.kid}.{_b64(self._mac(kind, ident, int(expires)))}"

    def path(self, kind: Kind, ident: str, *, ttl_s: float) -> str:
        """The URL path of a new link, valid ``ttl_s`` seconds from now.

        A meeting's path ends with ``/``: its page links its tracks relatively, so the
        links work under whatever prefix a reverse proxy serves them at.
        """
        expires = int(self.clock() + ttl_s)
        tail = "/" if kind == "m" else ""
        return f"/{kind}/{ident}/{self.token(kind, ident, expires)}{tail}"

    def verify(self, kind: Kind, ident: str, token: str) -> Verified:
        """The link's claims, or ``LinkRefused`` (403 forged, 410 revoked or expired)."""
        expires_text, _, rest = token.partition(".")
        kid, _, mac_text = rest.partition(".")
        if not (expires_text.isdigit() and kid and mac_text) or len(expires_text) > 12:
            raise LinkRefused("forged")
        if kid != self.kid:
            raise LinkRefused("revoked" if kid in self.retired else "forged")
        expires = int(expires_text)
        expected = _b64(self._mac(kind, ident, expires))
        if not hmac.compare_digest(expected.encode(), mac_text.encode()):
            raise LinkRefused("forged")
        if self.clock() >= expires:
            raise LinkRefused("expired")
        return Verified(kind, ident, expires)
