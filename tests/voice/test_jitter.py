"""The per-SSRC reorder buffer, driven directly with sequence numbers and times."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chunkrecorder.voice.jitter import RESYNC_GAP, Arrival, ReorderBuffer, Slot


def slot(seq: int, at: float = 0.0) -> Slot:
    return Slot(seq=seq, timestamp=seq * 960, arrival=at, payload=bytes([seq & 0xFF]))


def feed(buf: ReorderBuffer, seqs: list[int], at: float = 0.0) -> list[tuple[int, int]]:
    out = []
    for s in seqs:
        if buf.classify(s) is Arrival.NEW:
            out += [(r.slot.seq, r.missing) for r in buf.push(slot(s, at))]
            out += [(r.slot.seq, r.missing) for r in buf.pop_ready(at)]
    return out


def test_in_order_packets_go_straight_through_once_started() -> None:
    buf = ReorderBuffer(depth=3)
    assert feed(buf, [10, 11]) == []  # the start waits: 10 may not be the first
    assert feed(buf, [12]) == [(10, 0), (11, 0), (12, 0)]
    assert feed(buf, [13]) == [(13, 0)]
    assert buf.held == 0


def test_a_stream_that_starts_out_of_order_keeps_its_first_packet() -> None:
    buf = ReorderBuffer(depth=3)
    assert feed(buf, [11, 10, 12]) == [(10, 0), (11, 0), (12, 0)]


def test_a_lone_first_packet_is_released_after_max_delay() -> None:
    buf = ReorderBuffer(depth=5, max_delay_s=0.2)
    feed(buf, [7], at=1.0)
    assert buf.pop_ready(1.1) == []
    assert [r.slot.seq for r in buf.pop_ready(1.25)] == [7]


def test_a_swap_is_put_back_in_order() -> None:
    buf = ReorderBuffer(depth=2)
    assert feed(buf, [10, 12, 11, 13]) == [(10, 0), (11, 0), (12, 0), (13, 0)]


def test_a_gap_is_given_up_once_depth_packets_wait_behind_it() -> None:
    buf = ReorderBuffer(depth=3)
    feed(buf, [0, 1])
    out = feed(buf, [3, 4])
    assert out == [(0, 0), (1, 0)] and buf.held == 2  # waiting for 2
    out = feed(buf, [5])
    assert out == [(3, 1), (4, 0), (5, 0)]  # 2 declared missing
    assert buf.classify(2) is Arrival.LATE  # and refused if it turns up now


def test_a_gap_is_given_up_after_max_delay() -> None:
    buf = ReorderBuffer(depth=50, max_delay_s=0.2)
    feed(buf, [1], at=0.0)
    assert [r.slot.seq for r in buf.pop_ready(0.2)] == [1]
    feed(buf, [3], at=0.22)
    assert [r.slot.seq for r in buf.pop_ready(0.3)] == []
    released = buf.pop_ready(0.45)
    assert [(r.slot.seq, r.missing) for r in released] == [(3, 1)]


def test_duplicates_are_recognised_while_held_and_after_release() -> None:
    buf = ReorderBuffer(depth=1)
    feed(buf, [1])
    buf.depth = 5
    feed(buf, [3])
    assert buf.classify(3) is Arrival.DUPLICATE  # held
    assert buf.classify(1) is Arrival.DUPLICATE  # released
    assert buf.classify(2) is Arrival.NEW


def test_drain_releases_everything_with_its_gaps() -> None:
    buf = ReorderBuffer(depth=10)
    feed(buf, [1, 4, 6])
    assert [(r.slot.seq, r.missing) for r in buf.drain()] == [(1, 0), (4, 2), (6, 1)]
    assert buf.held == 0


def test_a_restarted_sender_is_followed_not_counted_as_loss() -> None:
    buf = ReorderBuffer(depth=1)
    feed(buf, [100, 101])
    far = 101 + RESYNC_GAP + 500
    assert buf.classify(far) is Arrival.NEW
    assert feed(buf, [far, far + 1]) == [(far, 0), (far + 1, 0)]
    back = 5  # a restart can also jump backwards
    assert buf.classify(back) is Arrival.NEW
    assert feed(buf, [back]) == [(back, 0)]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(5, 80),
    data=st.data(),
)
def test_any_reordering_within_the_window_loses_nothing(n: int, data: st.DataObject) -> None:
    """Displace each packet by at most depth-1 places: everything comes out, in order."""
    depth = 5
    keys = [i + data.draw(st.floats(0, depth - 1.01)) for i in range(n)]
    order = [i for _, i in sorted(zip(keys, range(n)))]
    buf = ReorderBuffer(depth=depth, max_delay_s=10.0)
    out = feed(buf, order) + [(r.slot.seq, r.missing) for r in buf.drain()]
    assert out == [(i, 0) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(seqs=st.lists(st.integers(0, 60), min_size=1, max_size=120))
def test_output_is_always_strictly_increasing_and_accounts_for_gaps(seqs: list[int]) -> None:
    buf = ReorderBuffer(depth=4, max_delay_s=10.0)
    out = feed(buf, seqs) + [(r.slot.seq, r.missing) for r in buf.drain()]
    released = [s for s, _ in out]
    assert released == sorted(set(released))
    for (prev, _), (cur, missing) in zip(out, out[1:]):
        assert missing == cur - prev - 1
