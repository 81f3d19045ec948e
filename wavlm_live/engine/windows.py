"""Overlapping analysis windows on the WavLM frame grid, and the frames each one settles.

WavLM frames are ``HOP_SAMPLES`` = 320 samples (20 ms) apart with a 400-sample receptive
field: frame ``j`` of the stream covers samples ``[320 j, 320 j + 400)``. A window of
``n`` samples starting at sample ``s`` (a multiple of 320) yields
``frames_for_samples(n)`` frames, which are stream frames ``s/320 + i``.

Windows are defined by their end sample ``e``: window ``k`` ends at ``e_k = (k+1) * hop``
and covers ``[max(0, e_k - window), e_k)``, so the first windows grow from the start of
the stream (results start after one hop, not after a whole window) and later windows slide
by one hop. Each window *settles* the frames ``[prev_end, e_k/320 - 1 - right)``: the
kept regions of consecutive windows tile the frame axis exactly, every kept frame has
``right`` frames of right context, and in steady state ``left`` frames of left context.
The frames after the kept region are the window's unsettled tail (partial results). When
the stream ends, one final window ending at the last sample settles everything left.

Source of the frame arithmetic: transformers' ``WavLMModel._get_feat_extract_output_lengths``
(conv kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wavlm_live.timegrid import (  # noqa: F401 - the grid, re-exported where windows are cut
    FRAME_SECONDS,
    HOP_SAMPLES,
    RECEPTIVE_FIELD,
    SAMPLE_RATE,
    frames_for_samples,
    snap_seconds,
)


@dataclass(frozen=True, slots=True)
class Window:
    """One analysis window.

    Attributes:
        index: window number (0-based; skipped windows leave gaps).
        start: first sample (absolute index, a multiple of 320).
        end: one past the last sample (absolute index).
        keep_start: first settled frame (absolute frame index).
        keep_end: one past the last settled frame; frames ``[keep_end, frame_end)`` are
            the unsettled tail.
        final: True for the last window of a stream (no unsettled tail).
    """

    index: int
    start: int
    end: int
    keep_start: int
    keep_end: int
    final: bool = False

    @property
    def frame_start(self) -> int:
        """Absolute index of the window's first frame."""
        return self.start // HOP_SAMPLES

    @property
    def frame_end(self) -> int:
        """One past the absolute index of the window's last frame."""
        return self.frame_start + frames_for_samples(self.end - self.start)

    @property
    def num_samples(self) -> int:
        """Window length in samples."""
        return self.end - self.start


class WindowPlan:
    """Window length/hop on the 320-sample grid and the settled region of each window.

    Args:
        window: window length in seconds (snapped to a multiple of 20 ms).
        hop: hop between window ends in seconds (snapped to a multiple of 20 ms); at most
            ``window - 0.02``.
        right_context: frames of right context every settled frame gets; default
            (``None``) splits the overlap evenly, half left, half right.

    Raises:
        ValueError: hop larger than the window allows, window shorter than 400 samples, or
            right context outside ``[0, overlap]``.
    """

    def __init__(self, window: float, hop: float, right_context: int | None = None) -> None:
        self.window_samples = snap_seconds(window)
        self.hop_samples = snap_seconds(hop)
        if self.window_samples < RECEPTIVE_FIELD:
            raise ValueError(f"window must be at least {RECEPTIVE_FIELD} samples, got {window!r} s")
        self.window_frames = frames_for_samples(self.window_samples)
        self.hop_frames = self.hop_samples // HOP_SAMPLES
        overlap = self.window_frames - self.hop_frames
        if overlap < 0:
            raise ValueError(
                f"hop ({self.hop_samples / SAMPLE_RATE:g} s) must be at most the window "
                f"({self.window_samples / SAMPLE_RATE:g} s) minus one 20 ms frame"
            )
        if right_context is None:
            right_context = overlap - overlap // 2
        if not 0 <= right_context <= overlap:
            raise ValueError(f"right context must be within [0, {overlap}] frames, got {right_context}")
        self.right_frames = right_context
        self.left_frames = overlap - right_context

    @property
    def window_seconds(self) -> float:
        """Snapped window length in seconds."""
        return self.window_samples / SAMPLE_RATE

    @property
    def hop_seconds(self) -> float:
        """Snapped hop in seconds."""
        return self.hop_samples / SAMPLE_RATE

    def end_of(self, index: int) -> int:
        """End sample of window ``index``: ``(index + 1) * hop``."""
        return (index + 1) * self.hop_samples

    def window(self, index: int, keep_start: int) -> Window:
        """Window ``index`` of a running stream, settling frames from ``keep_start``.

        ``keep_start`` is where the previous window's kept region ended (0 for the first
        window); after skipped windows it may lie before this window's first frame, in
        which case the kept region starts at the window's first frame instead.
        """
        return self.window_ending(index, self.end_of(index), keep_start)

    def window_ending(self, index: int, end: int, keep_start: int) -> Window:
        """Window number ``index`` ending at sample ``end`` (a multiple of 320), settling
        frames from ``keep_start`` (see :meth:`window`); a :class:`Schedule` cuts its
        windows at tick ends, which need not be multiples of this plan's hop."""
        start = max(0, end - self.window_samples)
        keep_end = end // HOP_SAMPLES - 1 - self.right_frames
        keep_start = max(keep_start, start // HOP_SAMPLES)
        return Window(index, start, end, keep_start, max(keep_start, keep_end))

    def final_window(self, index: int, total_samples: int, keep_start: int) -> Window | None:
        """The last window of a stream of ``total_samples``, settling every frame from
        ``keep_start`` to the end; ``None`` when nothing is left to settle."""
        frame_total = frames_for_samples(total_samples)
        if keep_start >= frame_total:
            return None
        start = max(0, total_samples - self.window_samples)
        start -= start % HOP_SAMPLES
        start = min(start, keep_start * HOP_SAMPLES)
        # Keep the window within the plan's length where possible, but never leave a
        # frame uncovered: a stream that skipped windows may need a longer final window.
        return Window(index, start, total_samples, max(keep_start, start // HOP_SAMPLES), frame_total, final=True)

    def windows_for(self, total_samples: int) -> list[Window]:
        """All windows (running ones, then the final one) of a stream of
        ``total_samples`` analysed without skipping: the offline schedule."""
        out: list[Window] = []
        keep = 0
        index = 0
        while self.end_of(index) <= total_samples:
            w = self.window(index, keep)
            if w.frame_end > w.frame_start:
                out.append(w)
                keep = w.keep_end
            index += 1
        last = self.final_window(index, total_samples, keep)
        if last is not None:
            out.append(last)
        return out


class Schedule:
    """Per-task window plans on one tick grid: each task has its own window and hop.

    The engine advances in *ticks* of ``tick_samples``, the greatest common divisor of
    the plans' hops; tick ``k`` ends at sample ``(k + 1) * tick_samples``. A plan is due
    at a tick when at least its hop has passed since its previous window ended (at
    ``hop`` for the first), and then cuts a window ending at the tick with its own
    length and right context, settling frames from where its previous window stopped:
    each plan's kept regions tile its frame axis exactly, as with a single
    :class:`WindowPlan`, and the stitchers join the tasks by absolute frame index.

    Args:
        plans: plan name -> :class:`WindowPlan` (the engine names plans after the task
            that leads them; a task that follows another, e.g. embeddings on the
            diarization windows, shares its leader's plan).

    Raises:
        ValueError: no plans.
    """

    def __init__(self, plans: dict[str, WindowPlan]) -> None:
        if not plans:
            raise ValueError("a schedule needs at least one window plan")
        self.plans = dict(plans)
        tick = 0
        for plan in self.plans.values():
            tick = math.gcd(tick, plan.hop_samples)
        self.tick_samples = tick
        self.max_window_samples = max(p.window_samples for p in self.plans.values())

    @property
    def tick_seconds(self) -> float:
        """Tick length in seconds (the finest hop's resolution)."""
        return self.tick_samples / SAMPLE_RATE

    def end_of(self, tick: int) -> int:
        """End sample of tick ``tick``: ``(tick + 1) * tick_samples``."""
        return (tick + 1) * self.tick_samples

    def due(self, name: str, end: int, last_end: int) -> bool:
        """Whether plan ``name`` cuts a window at a tick ending at sample ``end``, its
        previous window having ended at ``last_end`` (0 before the first)."""
        return end - last_end >= self.plans[name].hop_samples

    def reach(self, name: str, keep: int) -> int:
        """The latest end sample at which plan ``name``'s window still starts at or
        before absolute frame ``keep`` (its first unsettled frame): the widest hop that
        leaves no frame unsettled, ``keep * 320 + window``."""
        return keep * HOP_SAMPLES + self.plans[name].window_samples

    def windows_for(self, total_samples: int) -> list[dict[str, Window]]:
        """Every tick's windows (plan name -> window, only the due plans) of a stream of
        ``total_samples`` analysed without skipping, then the final tick's: the offline
        schedule. With one plan this is :meth:`WindowPlan.windows_for`, one dict each."""
        out: list[dict[str, Window]] = []
        keep = dict.fromkeys(self.plans, 0)
        last = dict.fromkeys(self.plans, 0)
        index = dict.fromkeys(self.plans, 0)
        tick = 0
        while self.end_of(tick) <= total_samples:
            end = self.end_of(tick)
            cuts = {}
            for name, plan in self.plans.items():
                if not self.due(name, end, last[name]):
                    continue
                w = plan.window_ending(index[name], end, keep[name])
                index[name] += 1
                last[name] = end
                if w.frame_end > w.frame_start:
                    cuts[name] = w
                    keep[name] = w.keep_end
            if cuts:
                out.append(cuts)
            tick += 1
        final = {}
        for name, plan in self.plans.items():
            w = plan.final_window(index[name], total_samples, keep[name])
            if w is not None:
                final[name] = w
        if final:
            out.append(final)
        return out
