"""A progress bar on stderr for the CLI's human mode.

stdout carries the result (a summary or the JSON object) and nothing else, so a
script can pipe it; the bar goes to stderr. On a terminal it redraws one line; in a
log (CI, a pipe) it prints a line per 10 % instead of thousands of carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    def __init__(self, stream: Optional[TextIO] = None, *, width: int = 30,
                 min_interval_s: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval_s = min_interval_s
        self._label: Optional[str] = None
        self._last_draw = 0.0
        self._last_decile = -1
        self._open_line = False

    def update(self, label: str, done: float, total: float, *, unit: str = "") -> None:
        if label != self._label:
            self._finish_line()
            self._label = label
            self._last_decile = -1
            self._last_draw = 0.0
        frac = 1.0 if total <= 0 else max(0.0, min(1.0, done / total))
        if self.tty:
            now = time.monotonic()
            if frac < 1.0 and now - self._last_draw < self.min_interval_s:
                return
            self._last_draw = now
            filled = round(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{label:<12} [{bar}] {_fmt(done)}/{_fmt(total)}{unit} {frac:4.0%}")
            self.stream.flush()
            self._open_line = True
        else:
            decile = int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(f"{label}: {_fmt(done)}/{_fmt(total)}{unit} ({frac:.0%})\n")
                self.stream.flush()

    def _finish_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def close(self) -> None:
        self._finish_line()
        self._label = None


def _fmt(x: float) -> str:
    return f"{x:.1f}" if isinstance(x, float) and not float(x).is_integer() else f"{int(x)}"
