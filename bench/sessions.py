"""Many sessions on one machine: how many real-time streams, and what batching buys.

Runs the project's own SessionHost/Scheduler in process (the same code `serve` runs for
client sessions, minus the sockets) on real speech (the bundled demo conversation and the
LibriVox clips in tests/data), and prints, in one run:

1. capacity: the largest number of concurrent *live* sessions, each fed at real-time pace
   (20 ms blocks, one feeder thread), for which no session skipped a window over
   ``--seconds`` of audio (doubling, then bisection);
2. throughput: 8 paced sessions (every window analysed), each given a whole recording at
   once, analysed by the scheduler batching across sessions versus one window at a time
   (runner ``max_batch = 1``): audio seconds per wall second and their ratio (goal >= 1.5).

Models: the bundled demo checkpoints (default), or random-weight wavlm-base-plus-size
checkpoints (``--base-plus``, built with transformers, the test extra). ``--device cuda``
runs them on a GPU (goal there: >= 1000 real-time sessions at 4 s / 0.5 s with
``--base-plus --hop 0.5``; raise ``--max-sessions``).

Usage: python bench/sessions.py [--seconds 20] [--threads 2] [--base-plus] [--device cpu|cuda]
       [--window 4] [--hop 1] [--max-sessions 256] [--skip-capacity] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from wavlm_live.cli import app  # noqa: E402
from wavlm_live.cli import build_parser  # noqa: E402
from wavlm_live.engine.bus import EventBus  # noqa: E402
from wavlm_live.engine.sessions import SessionHost, SessionOptions  # noqa: E402
from wavlm_live.events import StatsEvent  # noqa: E402


def recordings() -> list[np.ndarray]:
    """Real speech, 16 kHz mono float32: the demo conversation and the LibriVox clips."""
    out = [sf.read(app.demo_recording(), dtype="float32")[0]]
    out += [sf.read(p, dtype="float32")[0] for p in sorted((REPO / "tests" / "data").glob("*.wav"))]
    return out


def stream_of(seconds: float, offset: int, clips: list[np.ndarray]) -> np.ndarray:
    """``seconds`` of speech made of the clips, starting at a different clip per session."""
    parts, total, i = [], 0, offset
    while total < seconds * 16000:
        parts.append(clips[i % len(clips)])
        total += parts[-1].size
        i += 1
    return np.concatenate(parts)[: int(seconds * 16000)]


def load(args: argparse.Namespace, tmp: Path):
    argv = ["serve", "--compute", args.device, "--dtype", args.dtype, "--window", str(args.window), "--hop", str(args.hop)]
    if args.base_plus:
        from pipeline_rtf import build_checkpoints  # noqa: PLC0415

        folders = build_checkpoints(tmp)
        argv += ["--ctc-model", str(folders["captions"]), "--diarization-model", str(folders["diarization"]),
                 "--embedding-model", str(folders["embeddings"]), "--no-lm"]
        demo = False
    else:
        argv += ["--demo"] + (["--no-lm"] if args.no_lm else [])
        demo = True
    parsed = build_parser().parse_args(argv)
    models = app.load_models(parsed, demo=demo)
    return models, app.engine_config(parsed, models.demo, realtime=True)


def make_host(models, config, max_sessions: int) -> SessionHost:
    return SessionHost(config, captions=models.captions, diarization=models.diarization,
                       embeddings=models.embeddings, demo=models.demo, max_sessions=max_sessions,
                       buffer_seconds=30.0)


def live_trial(models, config, n: int, seconds: float, clips: list[np.ndarray]) -> dict:
    """``n`` live sessions fed at real-time pace for ``seconds``; counts skipped windows."""
    host = make_host(models, config, n)
    host.start()
    last: dict[int, StatsEvent] = {}
    engines = []
    for i in range(n):
        bus = EventBus()
        bus.subscribe(lambda e, i=i: last.__setitem__(i, e) if isinstance(e, StatsEvent) else None)
        engines.append(host.open(bus, SessionOptions(live=True))[1])
    streams = [stream_of(seconds, i, clips) for i in range(n)]
    block = 320
    t0 = time.monotonic()
    cycles0, windows0, busy0 = host.scheduler.cycles, host.scheduler.windows, host.scheduler.busy_seconds
    for k in range(0, int(seconds * 16000), block):
        due = t0 + k / 16000
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for engine, audio in zip(engines, streams):
            engine.feed(audio[k : k + block])
    for engine in engines:
        engine.close_input()
    for engine in engines:
        engine.join(120)
    wall = time.monotonic() - t0
    host.stop()
    s = host.scheduler
    stats = [last[i] for i in range(n)]
    return {
        "sessions": n,
        "skipped": sum(st.windows_skipped for st in stats),
        "analysed": sum(st.windows_analysed for st in stats),
        "mean_batch": (s.windows - windows0) / max(1, s.cycles - cycles0),
        "busy": (s.busy_seconds - busy0) / wall,
    }


def capacity(models, config, seconds: float, clips, limit: int) -> tuple[int, list[dict]]:
    """Largest n with no skipped window: doubling from 1, then bisection."""
    trials = []

    def ok(n: int) -> bool:
        result = live_trial(models, config, n, seconds, clips)
        trials.append(result)
        print(f"  {n:4d} live sessions: {result['skipped']} of {result['analysed'] + result['skipped']} windows "
              f"skipped, mean batch {result['mean_batch']:.1f}, scheduler busy {result['busy']:.0%}", flush=True)
        return result["skipped"] == 0

    good, bad = 0, None
    n = 1
    while n <= limit:
        if ok(n):
            good, n = n, n * 2
        else:
            bad = n
            break
    if bad is None:
        return good, trials
    while bad - good > max(1, good // 8):
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good, trials


def throughput(models, config, n: int, clips, max_batch: int | None, seconds: float = 30.0) -> float:
    """Audio seconds analysed per wall second for ``n`` paced sessions given ``seconds`` of
    speech each at once (``max_batch`` 1: one window per model call)."""
    runners = [m for m in (models.captions, models.diarization, models.embeddings) if m is not None]
    saved = [r.max_batch for r in runners]
    if max_batch is not None:
        for r in runners:
            r.max_batch = max_batch
    try:
        audio = [stream_of(seconds, i, clips) for i in range(n)]
        big = replace(config, buffer_seconds=max(a.size for a in audio) / 16000 + 10)
        host = SessionHost(big, captions=models.captions, diarization=models.diarization,
                           embeddings=models.embeddings, demo=models.demo, max_sessions=n)
        engines = []
        for a in audio:
            engine = host.open(EventBus(), SessionOptions(live=False))[1]
            engine.feed(a)
            engine.close_input()
            engines.append(engine)
        host.template().warmup()  # one-time costs paid by neither side
        t0 = time.perf_counter()
        host.start()
        for engine in engines:
            engine.join(600)
        wall = time.perf_counter() - t0
        host.stop()
        return sum(a.size for a in audio) / 16000 / wall
    finally:
        for r, b in zip(runners, saved):
            r.max_batch = b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per live trial")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--base-plus", action="store_true", help="wavlm-base-plus-size random checkpoints")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--max-sessions", type=int, default=256, help="capacity search limit")
    parser.add_argument("--sessions", type=int, default=8, help="sessions in the throughput comparison")
    parser.add_argument("--no-lm", action="store_true", help="greedy captions (the demo LM's beam search is pure Python)")
    parser.add_argument("--skip-capacity", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = recordings()
    with tempfile.TemporaryDirectory() as tmp:
        models, config = load(args, Path(tmp))
    print(f"models: {'random base-plus size' if args.base_plus else 'bundled demo'} on {models.captions.device} "
          f"({models.captions.dtype}), {args.threads} threads, window {config.window:g} s, hop {config.hop:g} s; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if not args.skip_throughput:
        one = throughput(models, config, args.sessions, clips, max_batch=1)
        batched = throughput(models, config, args.sessions, clips, max_batch=None)
        print(f"throughput at {args.sessions} paced sessions: batched {batched:.1f} audio s/s, one window at a "
              f"time {one:.1f} audio s/s: batched/one = {batched / one:.2f}x (goal >= 1.5)", flush=True)
    if not args.skip_capacity:
        print(f"capacity: live sessions at real-time pace, {args.seconds:g} s each:", flush=True)
        best, _ = capacity(models, config, args.seconds, clips, args.max_sessions)
        print(f"largest number of concurrent real-time sessions with no skipped window: {best}"
              + (" (the search limit)" if best >= args.max_sessions else ""), flush=True)
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
