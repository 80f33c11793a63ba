"""Harness impairments and clocks: seeded, independent, and what they claim to be."""

from __future__ import annotations

import io
import random

import pytest

from harness.clock import SimulatedClock, WallClock
from harness.impairments import CorruptKind, Fate, Impairments, NetworkPath
from harness.progress import ProgressBar


def _run(imp: Impairments, n: int = 5000) -> tuple[list[Fate], list[list[float]], NetworkPath]:
    path = NetworkPath(imp, corrupt=lambda data, kind, rng: kind.value.encode())
    fates, arrivals = [], []
    for i in range(n):
        fate, arr = path.send(i * 0.02, i.to_bytes(4, "big"))
        fates.append(fate)
        arrivals.append([a.at for a in arr])
    return fates, arrivals, path


def test_loss_rate_is_what_was_asked_and_reproducible() -> None:
    fates, _, path = _run(Impairments(loss=0.05, seed=1))
    lost = fates.count(Fate.LOST)
    assert 0.04 < lost / len(fates) < 0.06
    assert path.stats.lost == lost
    again, _, _ = _run(Impairments(loss=0.05, seed=1))
    assert again == fates
    other, _, _ = _run(Impairments(loss=0.05, seed=2))
    assert other != fates


def test_impairments_are_independent_of_each_other() -> None:
    # Turning jitter and duplication on must not change which packets are lost.
    plain, _, _ = _run(Impairments(loss=0.05, seed=9))
    noisy, _, _ = _run(Impairments(loss=0.05, jitter_ms=30, duplicate=0.1, reorder=0.1, seed=9))
    assert [f == Fate.LOST for f in plain] == [f == Fate.LOST for f in noisy]


def test_jitter_only_delays_and_stays_within_bounds() -> None:
    _, arrivals, _ = _run(Impairments(jitter_ms=25, seed=3), n=2000)
    delays = [a[0] - i * 0.02 for i, a in enumerate(arrivals)]
    assert min(delays) >= 0.0
    assert max(delays) <= 0.025 + 1e-9
    assert max(delays) > 0.02  # it really jitters


def test_reordered_packets_arrive_after_later_ones() -> None:
    _, arrivals, path = _run(Impairments(reorder=0.05, seed=4), n=2000)
    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i][0])
    overtaken = sum(1 for pos, i in enumerate(order) if pos != i)
    assert path.stats.reordered > 50
    assert overtaken > path.stats.reordered  # each held packet is overtaken by 1-3 others


def test_duplicates_arrive_twice() -> None:
    fates, arrivals, path = _run(Impairments(duplicate=0.1, seed=5), n=2000)
    twice = sum(1 for a in arrivals if len(a) == 2)
    assert twice == path.stats.duplicates and 150 < twice < 250
    assert all(f == Fate.DELIVERED for f in fates)


def test_corruption_uses_the_wire_and_is_split_by_kind() -> None:
    imp = Impairments(bad_mac=0.02, truncated=0.02, garbage_opus=0.02, seed=6)
    seen: list[CorruptKind] = []

    def corrupt(data: bytes, kind: CorruptKind, rng: random.Random) -> bytes:
        seen.append(kind)
        return b"damaged"

    path = NetworkPath(imp, corrupt=corrupt)
    out = [path.send(i * 0.02, b"fine") for i in range(5000)]
    corrupted = [arr[0].data for fate, arr in out if fate == Fate.CORRUPT]
    assert corrupted and all(d == b"damaged" for d in corrupted)
    assert set(seen) == set(CorruptKind)
    assert sum(path.stats.corrupted.values()) == len(corrupted)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"loss": 1.5}, "--loss must be a probability"),
        ({"jitter_ms": -1}, "--jitter-ms must be between"),
        ({"bad_mac": 0.6, "truncated": 0.6}, "add up to more than 1"),
    ],
)
def test_nonsense_impairments_are_refused_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Impairments(**kwargs)


def test_corruption_without_a_wire_is_refused() -> None:
    with pytest.raises(ValueError):
        NetworkPath(Impairments(bad_mac=0.1))


def test_simulated_clock_moves_only_forward() -> None:
    clock = SimulatedClock(10.0)
    assert clock() == 10.0
    clock.advance(0.5)
    clock.set(11.0)
    assert clock.now() == 11.0
    with pytest.raises(ValueError):
        clock.set(10.9)
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_wall_clock_starts_near_zero_and_sleeps() -> None:
    clock = WallClock()
    assert 0 <= clock() < 0.5
    await clock.sleep_until(clock() + 0.02)
    assert clock() >= 0.02


def test_progress_bar_in_a_log_prints_a_line_per_tenth() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    for i in range(101):
        bar.update("streaming", i * 0.6, 60.0, unit=" s")
    bar.update("transcoding", 3, 3)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 12
    assert lines[0].startswith("streaming: 0/60 s") and lines[-1] == "transcoding: 3/3 (100%)"
