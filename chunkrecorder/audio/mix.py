"""Summing speakers into the mixed track, and fitting Discord's stereo into a meeting's channels.

The mix is computed per chunk at flush time (chunk ``k`` of the mix is the sum of every
speaker's chunk ``k``, prime and tail included), so it costs memory for one window and
is encoded like any other track. Its limiter is memoryless on purpose: a limiter with
attack/release state would make chunk ``k`` depend on chunk ``k-1``'s history, which a
restart or a chunk encoded by another process would not have. Memoryless means the
mix of a window is a pure function of that window's inputs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Full scale of s16.
FULL_SCALE = 32_767
#: Below this magnitude the limiter is the identity, so the mix is exactly the sum
#: wherever the sum fits; -2.5 dBFS leaves loud single speakers untouched.
THRESHOLD = 24_576


def soft_limit(total: np.ndarray) -> np.ndarray:
    """Map a wide-integer sum to int16: identity up to ``THRESHOLD``, a tanh knee above.

    The knee approaches full scale asymptotically and is monotonic, so loud overlaps
    are compressed rather than clipped, and nothing ever wraps around.
    """
    wide = np.asarray(total, dtype=np.int64)
    out = np.clip(wide, -FULL_SCALE, FULL_SCALE).astype(np.int16)
    over = np.abs(wide) > THRESHOLD
    if over.any():
        x = wide[over].astype(np.float64)
        room = FULL_SCALE - THRESHOLD
        mag = THRESHOLD + room * np.tanh((np.abs(x) - THRESHOLD) / room)
        out[over] = (np.sign(x) * np.minimum(np.floor(mag), FULL_SCALE)).astype(np.int16)
    return out


def mix(tracks: Sequence[np.ndarray]) -> np.ndarray:
    """Limited sum of equally shaped int16 arrays (an empty list gives an empty array).

    One track is its own mix, unlimited: it fits by construction, and a one-speaker
    window's mix must be that speaker's chunk sample for sample (the pipeline then
    encodes it once and uses it for both files).
    """
    if not tracks:
        return np.zeros((0, 1), dtype=np.int16)
    if len(tracks) == 1:
        return np.array(tracks[0], dtype=np.int16, copy=True)
    total = np.zeros(tracks[0].shape, dtype=np.int32)
    for t in tracks:
        if t.shape != total.shape:
            raise ValueError(f"cannot mix shapes {t.shape} and {total.shape}")
        total += t
    # Mostly the sum fits (speakers rarely peak together): then the limiter is the
    # identity and two passes over the window replace its six.
    if total.size and max(int(total.max()), -int(total.min())) <= THRESHOLD:
        return total.astype(np.int16)
    return soft_limit(total)


def to_channels(pcm: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved int16 ``(n, 1)`` or ``(n, 2)`` to the meeting's channel count.

    Mono is the rounded-down mean of left and right: a speaker's voice is in both and
    a sum would clip where the mean cannot. Mono to stereo is the same sample in
    both. (The receiver normally decodes straight to the meeting's count, so this
    runs only for frames that arrive otherwise.)
    """
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, not {channels}")
    have = pcm.shape[1]
    if have == channels:
        return pcm
    if have == 1:
        return np.repeat(pcm, 2, axis=1)
    wide = pcm.astype(np.int32)
    return ((wide[:, 0] + wide[:, 1]) >> 1).astype(np.int16).reshape(-1, 1)
