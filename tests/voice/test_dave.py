"""The DAVE layer: a real davey group built locally, decrypted by the cog's DaveyDecryptor."""

from __future__ import annotations

import davey
import pytest

from chunkrecorder.voice.dave import OPUS_SILENCE, DaveyDecryptor, PassthroughDecryptor, looks_encrypted
from harness.wire.dave import DaveGroup
from harness.wire.mls import ExternalSender, ecdsa_p256_sign, p256_public_key

FRAME = b"\x78" + bytes(range(1, 80))


@pytest.fixture
def group() -> DaveGroup:
    g = DaveGroup(channel_id=123456789012345678, bot_user_id=999)
    g.add_members([111, 222])
    return g


def test_bot_decrypts_each_members_frames(group: DaveGroup) -> None:
    dec = DaveyDecryptor.for_session(group.bot)
    for uid in (111, 222):
        sealed = group.members[uid].encrypt_opus(FRAME)
        assert sealed != FRAME and looks_encrypted(sealed)
        assert dec.decrypt(uid, sealed) == FRAME


def test_a_frame_is_only_readable_as_its_sender(group: DaveGroup) -> None:
    dec = DaveyDecryptor.for_session(group.bot)
    sealed = group.members[111].encrypt_opus(FRAME)
    assert dec.decrypt(222, sealed) is None  # wrong user's key: dropped, not garbage passed on
    assert dec.failures == 1


def test_tampered_frame_is_dropped(group: DaveGroup) -> None:
    dec = DaveyDecryptor.for_session(group.bot)
    sealed = bytearray(group.members[111].encrypt_opus(FRAME))
    sealed[2] ^= 0x01
    assert dec.decrypt(111, bytes(sealed)) is None


def test_replayed_frame_is_refused_by_davey(group: DaveGroup) -> None:
    """Why the receiver filters duplicates before the DAVE layer."""
    dec = DaveyDecryptor.for_session(group.bot)
    sealed = group.members[111].encrypt_opus(FRAME)
    assert dec.decrypt(111, sealed) == FRAME
    assert dec.decrypt(111, sealed) is None


def test_out_of_order_frames_decrypt_after_the_first(group: DaveGroup) -> None:
    dec = DaveyDecryptor.for_session(group.bot)
    frames = [bytes([0x78, i]) * 20 for i in range(6)]
    sealed = [group.members[222].encrypt_opus(f) for f in frames]
    for i in (0, 2, 1, 4, 3, 5):
        assert dec.decrypt(222, sealed[i]) == frames[i]


def test_a_frame_older_than_the_first_seen_is_refused(group: DaveGroup) -> None:
    """libdave's nonce window starts at the first frame it decrypts: why the receiver
    runs DAVE in sequence order, after the reorder buffer."""
    dec = DaveyDecryptor.for_session(group.bot)
    sealed = [group.members[222].encrypt_opus(bytes([0x78, i]) * 20) for i in range(2)]
    assert dec.decrypt(222, sealed[1]) is not None
    assert dec.decrypt(222, sealed[0]) is None


def test_silence_frames_pass_unencrypted(group: DaveGroup) -> None:
    assert group.members[111].encrypt_opus(OPUS_SILENCE) == OPUS_SILENCE  # senders never encrypt it
    assert DaveyDecryptor.for_session(group.bot).decrypt(111, OPUS_SILENCE) == OPUS_SILENCE


def test_unencrypted_frame_needs_passthrough_mode(group: DaveGroup) -> None:
    dec = DaveyDecryptor.for_session(group.bot)
    assert dec.decrypt(111, FRAME) is None  # E2EE is on: a clear frame is not accepted
    group.bot.set_passthrough_mode(True, 10)  # what discord.py does during a transition
    assert dec.decrypt(111, FRAME) == FRAME


def test_clear_frames_pass_while_the_call_comes_back_from_protocol_0(group: DaveGroup) -> None:
    """After a downgrade, the upgrade's new group can be ready here (the bot processed its
    welcome) before the transition executes and members start encrypting again."""
    upgrading = [True]
    dec = DaveyDecryptor(lambda: group.bot, lambda: 1, lambda: upgrading[0])
    assert dec.decrypt(111, FRAME) == FRAME
    sealed = group.members[111].encrypt_opus(FRAME)
    assert dec.decrypt(111, sealed) == FRAME
    upgrading[0] = False  # executed: from now on davey's own passthrough decides
    assert dec.decrypt(111, FRAME) is None


def test_no_session_or_version_zero_passes_everything_through() -> None:
    assert DaveyDecryptor(lambda: None).decrypt(1, FRAME) == FRAME
    session = davey.DaveSession(1, 999, 5)
    assert DaveyDecryptor(lambda: session, lambda: 0).decrypt(1, FRAME) == FRAME
    assert PassthroughDecryptor().decrypt(1, FRAME) == FRAME


def test_clear_frames_pass_before_the_bot_has_joined_a_group() -> None:
    """First join: the session exists but has no group yet; Discord sends clear frames."""
    session = davey.DaveSession(1, 999, 5)
    dec = DaveyDecryptor(lambda: session, lambda: 1)
    assert dec.decrypt(111, FRAME) == FRAME
    assert dec.decrypt(111, FRAME[:-2] + b"\xfa\xfa") is None  # but a DAVE frame cannot be read


def test_late_joiner_starts_a_new_epoch_and_everyone_keeps_talking(group: DaveGroup) -> None:
    dec = DaveyDecryptor.for_session(group.bot)
    epoch = group.epoch
    group.add_member(333)
    assert group.epoch == epoch + 1
    for uid in (111, 222, 333):
        assert dec.decrypt(uid, group.members[uid].encrypt_opus(FRAME)) == FRAME


def test_decryptor_reads_the_current_session_each_time() -> None:
    """discord.py replaces its session on reconnect: a stale one must not be used."""
    first, second = DaveGroup(channel_id=7, bot_user_id=999), DaveGroup(channel_id=7, bot_user_id=999)
    first.add_member(111)
    second.add_member(111)
    current = {"session": first.bot}
    dec = DaveyDecryptor(lambda: current["session"], lambda: 1)
    assert dec.decrypt(111, first.members[111].encrypt_opus(FRAME)) == FRAME
    current["session"] = second.bot
    assert dec.decrypt(111, second.members[111].encrypt_opus(FRAME)) == FRAME
    assert dec.decrypt(111, first.members[111].encrypt_opus(FRAME)) is None


# ---- the harness's external sender (what makes the real group possible) ----------------
def test_forged_proposal_is_rejected_by_davey() -> None:
    """Signatures are really checked: a proposal signed by another key is refused."""
    real, impostor = ExternalSender(), ExternalSender()
    bot = davey.DaveSession(1, 999, 5)
    bot.set_external_sender(real.package())
    member = davey.DaveSession(1, 111, 5)
    forged = impostor.proposals_payload((5).to_bytes(8, "big"), 0, [member.get_serialized_key_package()])
    with pytest.raises(ValueError):
        bot.process_proposals(davey.ProposalsOperationType.append, forged)


def test_signing_is_deterministic_and_low_s() -> None:
    key = bytes(range(1, 33))
    sig = ecdsa_p256_sign(key, b"message")
    assert sig == ecdsa_p256_sign(key, b"message")
    assert sig != ecdsa_p256_sign(key, b"other message")
    r_len = sig[3]
    s = int.from_bytes(sig[4 + r_len + 2 :], "big")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    assert 0 < s <= n // 2
    assert len(p256_public_key(key)) == 65


def test_harness_speakers_join_in_one_commit_and_late_ones_in_the_next() -> None:
    from harness.wire import WireGroup

    group = WireGroup(channel_id=9, bot_user_id=999, seed=2)
    early = [group.add_speaker(uid) for uid in (1, 2, 3)]
    assert group.dave is not None and group.dave.epoch == 0  # nobody has sent yet
    dec = DaveyDecryptor.for_session(group.dave.bot)
    sealed = early[0].dave.encrypt_opus(FRAME)
    assert group.dave.epoch == 1  # all three joined together
    late = group.add_speaker(4)
    assert dec.decrypt(1, sealed) == FRAME
    assert dec.decrypt(4, late.dave.encrypt_opus(FRAME)) == FRAME and group.dave.epoch == 2
    for wire in early[1:]:
        assert dec.decrypt(wire.user_id, wire.dave.encrypt_opus(FRAME)) == FRAME
