"""Progress of long offline runs (``transcribe``, ``eval``) on stderr.

On a terminal a tqdm bar is drawn and redrawn in place. Anywhere else (a log file, a
pipe, CI, a cron job) a bar would be a stream of carriage returns, so plain lines are
written instead, at most one per ``interval`` seconds: a one-hour file at the default 10 s
gives a few dozen lines, a run shorter than the interval none.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any


class Progress:
    """Reports how much of a run is done.

    Args:
        label: what runs, e.g. the file name; starts every line.
        total: the amount of work (``unit``s), or ``None`` / 0 when it is not known (then
            no percentage is shown).
        unit: e.g. ``"s"`` (seconds of audio) or ``"clips"``.
        interval: seconds of wall time between two plain lines (>= 0).
        stream: where to write (default ``sys.stderr``, looked up when created).
        tty: draw a terminal bar; default: whether ``stream`` is a terminal.
        clock: monotonic time in seconds (for tests).
    """

    def __init__(self, label: str, total: float | None, unit: str, *, interval: float = 10.0,
                 stream: IO[str] | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not interval >= 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval!r}")
        self.label = label
        self.total = total or None
        self.unit = unit
        self.interval = interval
        self.stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._start = self._last = clock()
        self.lines = 0
        """Plain lines written so far."""
        self._bar: Any = None
        if self.stream.isatty() if tty is None else tty:
            from tqdm import tqdm  # noqa: PLC0415

            self._bar = tqdm(total=self.total, unit=unit, desc=label, file=self.stream, leave=False)

    def update(self, done: float) -> None:
        """``done`` units of ``total`` are finished (a running total, not an increment)."""
        if self._bar is not None:
            self._bar.n = round(min(done, self.total or done), 1)
            self._bar.refresh()
            return
        now = self._clock()
        if now - self._last < self.interval:
            return
        self._last = now
        if self.total:
            head = f"{done:.{self._digits}f} of {self.total:.{self._digits}f} {self.unit} ({100 * min(done, self.total) / self.total:.0f}%)"
        else:
            head = f"{done:.{self._digits}f} {self.unit}"
        print(f"{self.label}: {head}, {now - self._start:.0f} s elapsed", file=self.stream, flush=True)
        self.lines += 1

    @property
    def _digits(self) -> int:
        return 1 if self.unit == "s" else 0

    def close(self) -> None:
        """Remove the terminal bar (plain lines stay as written)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
