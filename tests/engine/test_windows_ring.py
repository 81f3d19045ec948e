"""Window plan tiling invariant and ring-buffer accounting."""

import threading

import numpy as np
import pytest

from wavlm_live.engine.ringbuffer import OverwrittenError, RingBuffer
from wavlm_live.engine.windows import HOP_SAMPLES, WindowPlan, frames_for_samples


@pytest.mark.parametrize("window", [0.5, 1.0, 2.0, 3.0, 4.0, 5.02, 8.0])
@pytest.mark.parametrize("hop", [0.02, 0.2, 0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("total", [399, 400, 720, 16000, 16000 * 7 + 123, 16000 * 23 + 7])
def test_kept_regions_tile_the_frame_axis(window, hop, total):
    if hop > window - 0.02:
        with pytest.raises(ValueError, match="hop"):
            WindowPlan(window, hop)
        return
    plan = WindowPlan(window, hop)
    windows = plan.windows_for(total)
    covered = []
    for w in windows:
        assert w.start % HOP_SAMPLES == 0 and 0 <= w.start < w.end <= total
        assert w.end - w.start <= max(plan.window_samples, plan.window_samples + plan.hop_samples)
        assert w.frame_start <= w.keep_start <= w.keep_end <= w.frame_end
        if not w.final:
            assert w.frame_end - w.keep_end == plan.right_frames or w.keep_end == w.keep_start
        covered.extend(range(w.keep_start, w.keep_end))
    # every frame of the stream settled exactly once, in order
    assert covered == list(range(frames_for_samples(total)))
    assert sum(w.final for w in windows) <= 1


def test_frames_formula_matches_reference_spot_values():
    # floor((N - 400) / 320) + 1, from transformers' conv output-length arithmetic
    assert [frames_for_samples(n) for n in (0, 399, 400, 719, 720, 16000)] == [0, 0, 1, 1, 2, 49]


def test_steady_state_context():
    plan = WindowPlan(4.0, 1.0)
    w = plan.window(10, plan.window(9, 0).keep_end)
    assert w.keep_start - w.frame_start == plan.left_frames
    assert w.frame_end - w.keep_end == plan.right_frames
    assert w.keep_end - w.keep_start == plan.hop_frames


def test_window_after_skip_restarts_at_its_own_first_frame():
    plan = WindowPlan(2.0, 0.5)
    w = plan.window(20, keep_start=3)  # windows 1..19 were skipped
    assert w.keep_start == w.frame_start


def test_ring_buffer_reads_back_across_wraparound():
    ring = RingBuffer(seconds=0.01, sample_rate=1000)  # 10 samples
    data = np.arange(27, dtype=np.float32)
    for i in range(0, 27, 4):
        ring.write(data[i : i + 4])
    assert ring.written == 27 and ring.oldest == 17
    np.testing.assert_array_equal(ring.read(17, 27), data[17:27])
    np.testing.assert_array_equal(ring.read(20, 23), data[20:23])
    with pytest.raises(OverwrittenError):
        ring.read(16, 20)
    with pytest.raises(ValueError):
        ring.read(20, 28)


def test_ring_buffer_counts_overwrites_of_unreleased_audio():
    ring = RingBuffer(seconds=0.01, sample_rate=1000)
    ring.write(np.zeros(8, np.float32))
    ring.release(5)  # consumer still needs samples 5..
    ring.write(np.zeros(6, np.float32))  # oldest becomes 4: nothing needed was lost
    assert ring.overwritten == 0
    ring.write(np.zeros(3, np.float32))  # oldest becomes 7: samples 5, 6 lost
    assert ring.overwritten == 2
    ring.write(np.ones(25, np.float32))  # larger than the buffer
    assert ring.oversize_writes == 1
    assert ring.overwritten == 2 + (42 - 10 - 7)
    np.testing.assert_array_equal(ring.read(32, 42), np.ones(10, np.float32))


def test_ring_buffer_wait_for_wakes_on_write_and_close():
    ring = RingBuffer(seconds=1.0, sample_rate=1000)
    results = []
    t = threading.Thread(target=lambda: results.append(ring.wait_for(100, timeout=5)))
    t.start()
    ring.write(np.zeros(100, np.float32))
    t.join(5)
    assert results == [True]
    t = threading.Thread(target=lambda: results.append(ring.wait_for(500, timeout=5)))
    t.start()
    ring.close()
    t.join(5)
    assert results == [True, False]
    with pytest.raises(ValueError, match="closed"):
        ring.write(np.zeros(1, np.float32))


def test_ring_buffer_rejects_bad_input():
    with pytest.raises(ValueError):
        RingBuffer(0)
    ring = RingBuffer(1.0)
    with pytest.raises(ValueError, match="1-D"):
        ring.write(np.zeros((2, 10), np.float32))
