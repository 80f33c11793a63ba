"""A stand-in for Discord's voice server in the DAVE (MLS) handshake, just enough of it.

On real Discord the voice gateway is the MLS *external sender*: it hands every client
its ExternalSender package (op 25) and sends signed Add proposals (op 27) that one
member commits. To build a real ``davey`` group locally the harness plays that part:
it signs Add proposals for each speaker's key package (and Remove proposals for members
who leave, for the fake voice server) with its own P-256 key. Only
the few structures of RFC 9420 this needs are encoded here (TLS presentation language
with MLS variable-length vectors), and signing is plain ECDSA over P-256 in Python
(the harness signs a handful of proposals per meeting, so speed does not matter and
no extra dependency is needed).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import davey

# --- P-256 (secp256r1) ---------------------------------------------------------------
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_A = _P - 3
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

_Jacobian = tuple[int, int, int]


def _double(p: _Jacobian) -> _Jacobian:
    x, y, z = p
    if y == 0:
        return (0, 1, 0)
    s = 4 * x * y * y % _P
    m = (3 * x * x + _A * pow(z, 4, _P)) % _P
    nx = (m * m - 2 * s) % _P
    ny = (m * (s - nx) - 8 * pow(y, 4, _P)) % _P
    nz = 2 * y * z % _P
    return (nx, ny, nz)


def _add(p: _Jacobian, q: _Jacobian) -> _Jacobian:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1s, z2s = z1 * z1 % _P, z2 * z2 % _P
    u1, u2 = x1 * z2s % _P, x2 * z1s % _P
    s1, s2 = y1 * z2s * z2 % _P, y2 * z1s * z1 % _P
    if u1 == u2:
        return _double(p) if s1 == s2 else (0, 1, 0)
    h, r = (u2 - u1) % _P, (s2 - s1) % _P
    h2 = h * h % _P
    h3 = h * h2 % _P
    nx = (r * r - h3 - 2 * u1 * h2) % _P
    ny = (r * (u1 * h2 - nx) - s1 * h3) % _P
    nz = h * z1 * z2 % _P
    return (nx, ny, nz)


def _mul(k: int, point: tuple[int, int]) -> tuple[int, int]:
    result: _Jacobian = (0, 1, 0)
    addend: _Jacobian = (point[0], point[1], 1)
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _double(addend)
        k >>= 1
    x, y, z = result
    zi = pow(z, -1, _P)
    return (x * zi * zi % _P, y * zi * zi * zi % _P)


def _der_int(v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 8) // 8, "big")  # leading 0 keeps it positive
    return b"\x02" + bytes([len(raw)]) + raw


def _rfc6979_k(secret: int, digest: bytes) -> int:
    """Deterministic nonce (RFC 6979), so a seeded harness run signs identically."""
    x = secret.to_bytes(32, "big")
    h = (int.from_bytes(digest, "big") % _N).to_bytes(32, "big")
    v, k = b"\x01" * 32, b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()
        candidate = int.from_bytes(v, "big")
        if 1 <= candidate < _N:
            return candidate
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def ecdsa_p256_sign(private_key: bytes, message: bytes) -> bytes:
    """ECDSA-SHA256 signature, DER-encoded with low S (what MLS and openmls expect)."""
    d = int.from_bytes(private_key, "big")
    digest = hashlib.sha256(message).digest()
    e = int.from_bytes(digest, "big")
    k = _rfc6979_k(d, digest)
    r = _mul(k, _G)[0] % _N
    s = pow(k, -1, _N) * (e + r * d) % _N
    if s > _N // 2:
        s = _N - s
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def p256_public_key(private_key: bytes) -> bytes:
    x, y = _mul(int.from_bytes(private_key, "big"), _G)
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


# --- MLS wire encoding (RFC 9420 §2.1.2) ----------------------------------------------
def varint(n: int) -> bytes:
    if n < 0x40:
        return bytes([n])
    if n < 0x4000:
        return struct.pack(">H", 0x4000 | n)
    if n < 0x40000000:
        return struct.pack(">I", 0x80000000 | n)
    raise ValueError("MLS vector too long")


def vl(data: bytes) -> bytes:
    return varint(len(data)) + data


_MLS10 = 1
_WIRE_PUBLIC_MESSAGE = 1
_SENDER_EXTERNAL = 2
_CONTENT_PROPOSAL = 2
_PROPOSAL_ADD = 1
_PROPOSAL_REMOVE = 3
_CREDENTIAL_BASIC = 1


class ExternalSender:
    """The voice server's MLS identity: signs Add proposals that group members commit."""

    def __init__(self, private_key: bytes | None = None, identity: bytes = b"harness-voice-server") -> None:
        self.private_key = private_key or davey.generate_p256_keypair().private
        self.public_key = p256_public_key(self.private_key)
        self.identity = identity

    def package(self) -> bytes:
        """Serialized ExternalSender (what op 25 carries after its opcode byte)."""
        return vl(self.public_key) + struct.pack(">H", _CREDENTIAL_BASIC) + vl(self.identity)

    def add_proposal(self, group_id: bytes, epoch: int, key_package: bytes) -> bytes:
        """One MLSMessage(PublicMessage) with an external Add proposal for ``key_package``."""
        return self._proposal(group_id, epoch, struct.pack(">H", _PROPOSAL_ADD) + key_package)

    def remove_proposal(self, group_id: bytes, epoch: int, leaf_index: int) -> bytes:
        """An external Remove proposal for the member at ``leaf_index`` (a client that left)."""
        return self._proposal(group_id, epoch, struct.pack(">HI", _PROPOSAL_REMOVE, leaf_index))

    def _proposal(self, group_id: bytes, epoch: int, proposal: bytes) -> bytes:
        content = (
            vl(group_id)
            + struct.pack(">Q", epoch)
            + struct.pack(">BI", _SENDER_EXTERNAL, 0)
            + vl(b"")
            + bytes([_CONTENT_PROPOSAL])
            + proposal
        )
        header = struct.pack(">HH", _MLS10, _WIRE_PUBLIC_MESSAGE)
        to_sign = vl(b"MLS 1.0 FramedContentTBS") + vl(header + content)
        signature = ecdsa_p256_sign(self.private_key, to_sign)
        return header + content + vl(signature)

    def proposals_payload(self, group_id: bytes, epoch: int, key_packages: list[bytes]) -> bytes:
        """The ``proposals`` argument of ``DaveSession.process_proposals`` (op 27, append)."""
        return vl(b"".join(self.add_proposal(group_id, epoch, kp) for kp in key_packages))

    def removals_payload(self, group_id: bytes, epoch: int, leaf_indices: list[int]) -> bytes:
        """Op 27's ``proposals`` removing the members at ``leaf_indices``."""
        return vl(b"".join(self.remove_proposal(group_id, epoch, i) for i in leaf_indices))
