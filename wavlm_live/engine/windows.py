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
        end = self.end_of(index)
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
