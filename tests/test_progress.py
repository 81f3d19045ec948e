"""Progress lines for logs and pipes: plain lines, at most one per interval."""

import io

import pytest

from wavlm_live.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_at_most_once_per_interval():
    clock, out = Clock(), io.StringIO()
    p = Progress("talk.m4a", 3600.0, "s", interval=10.0, stream=out, clock=clock)
    for second in range(0, 61):  # one update per wall second, 60 s of audio each
        clock.t = 100.0 + second
        p.update(60.0 * second)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines == [f"talk.m4a: {600.0 * k:.1f} of 3600.0 s ({100 * 600 * k / 3600:.0f}%), {10 * k} s elapsed"
                     for k in range(1, 7)]
    assert "\r" not in out.getvalue() and p.lines == 6


def test_unknown_totals_and_counts():
    clock, out = Clock(), io.StringIO()
    p = Progress("eval", None, "clips", interval=0.0, stream=out, clock=clock)
    p.update(3)
    assert out.getvalue() == "eval: 3 clips, 0 s elapsed\n"
    with pytest.raises(ValueError):
        Progress("x", 1.0, "s", interval=-1, stream=out)


def test_a_terminal_gets_a_bar_that_is_redrawn_in_place():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    p = Progress("talk.wav", 10.0, "s", stream=out)
    p.update(5.0)
    p.close()
    assert "\r" in out.getvalue() and "talk.wav" in out.getvalue() and p.lines == 0
