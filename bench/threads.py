"""Threads: one model pass with two intra-op threads, or two passes side by side with one each?

Builds the base-plus-size random captions (CTC) and diarization checkpoints of
``bench/pipeline_rtf.py`` and times, in one run, the pair of passes the default schedule
runs together at a diarization tick (a ``--captions-window`` caption window and a
``--diarization-window`` diarization window, bfloat16 on the CPU where supported):

* ``sequential_2x1``: one thread runs the captions pass then the diarization pass, each
  with two intra-op threads (``torch.set_num_threads(2)``: what the engine does today);
* ``side_by_side_1x2``: two Python threads, each with one intra-op thread
  (``torch.set_num_threads(1)`` inside the thread: PyTorch's OpenMP thread count is per
  calling thread), one pass each, started together; a pair ends when both have;
* ``sequential_1x1``: both passes one after the other on one intra-op thread (the
  scaling baseline: ``sequential_1x1 / sequential_2x1`` is the two-thread speed-up).

Each mode runs ``--pairs`` pairs (after two warm-up pairs), alone and then with
``--load`` busy processes beside it (each a Python loop busy ``--duty`` of the time, as
capture, websocket server and dashboard take their share of the cores in the live app).
Printed: wall and CPU seconds per pair (CPU from ``/proc/self/stat``: under contention
OpenMP threads that spin while waiting show up as CPU time), and the ratios
``side_by_side / sequential`` (below 1: side by side is faster), with the machine's load
average at the start and end.

Usage: python bench/threads.py [--pairs 20] [--load 1] [--duty 0.5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_rtf import build_checkpoints, runners, speech  # noqa: E402


def busy(duty: float, stop) -> None:
    """Busy ``duty`` of every 10 ms until ``stop`` is set (another process's share of a core)."""
    while not stop.is_set():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.01 * duty:
            pass
        time.sleep(0.01 * (1 - duty))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sequential(passes, pairs: int, threads: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    for _ in range(2):
        for run in passes:
            run()
    w0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(pairs):
        for run in passes:
            run()
    return (time.perf_counter() - w0) / pairs, (cpu_seconds() - c0) / pairs


def side_by_side(passes, pairs: int) -> tuple[float, float]:
    start = threading.Barrier(len(passes) + 1)
    done = threading.Barrier(len(passes) + 1)

    def worker(run) -> None:
        torch.set_num_threads(1)
        for _ in range(pairs + 2):
            start.wait()
            run()
            done.wait()

    threads = [threading.Thread(target=worker, args=(run,), daemon=True) for run in passes]
    for t in threads:
        t.start()
    for _ in range(2):  # warm-up pairs
        start.wait()
        done.wait()
    w0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(pairs):
        start.wait()
        done.wait()
    wall, cpu = (time.perf_counter() - w0) / pairs, (cpu_seconds() - c0) / pairs
    for t in threads:
        t.join()
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--load", type=int, default=1, help="busy processes in the contended runs")
    parser.add_argument("--duty", type=float, default=0.5, help="share of the time each busy process computes")
    parser.add_argument("--captions-window", type=float, default=2.0)
    parser.add_argument("--diarization-window", type=float, default=4.0)
    args = parser.parse_args()
    result: dict = {"load_average_start": round(os.getloadavg()[0], 2), "pairs": args.pairs,
                    "windows_s": [args.captions_window, args.diarization_window]}
    audio = speech(max(args.captions_window, args.diarization_window))
    with tempfile.TemporaryDirectory() as tmp:
        models = runners(build_checkpoints(Path(tmp)), "auto", "cpu")
        cap = audio[: int(args.captions_window * 16000)]
        dia = audio[: int(args.diarization_window * 16000)]
        passes = [lambda: models["captions"].logits(cap), lambda: models["diarization"].activity(dia)]
        for contended in (False, True):
            stop, procs = mp.Event(), []
            if contended:
                procs = [mp.Process(target=busy, args=(args.duty, stop), daemon=True) for _ in range(args.load)]
                for p in procs:
                    p.start()
            key = f"with_{args.load}x{args.duty:g}_load" if contended else "alone"
            modes = {"sequential_2x1": sequential(passes, args.pairs, 2),
                     "side_by_side_1x2": side_by_side(passes, args.pairs),
                     "sequential_1x1": sequential(passes, args.pairs, 1)}
            torch.set_num_threads(2)
            stop.set()
            for p in procs:
                p.join()
            entry = {m: {"wall_s": round(w, 4), "cpu_s": round(c, 4)} for m, (w, c) in modes.items()}
            entry["side_by_side_over_sequential_wall"] = round(modes["side_by_side_1x2"][0] / modes["sequential_2x1"][0], 3)
            entry["side_by_side_over_sequential_cpu"] = round(modes["side_by_side_1x2"][1] / modes["sequential_2x1"][1], 3)
            entry["two_thread_speedup"] = round(modes["sequential_1x1"][0] / modes["sequential_2x1"][0], 3)
            result[key] = entry
            print(key, json.dumps(entry), file=sys.stderr, flush=True)
    result["load_average_end"] = round(os.getloadavg()[0], 2)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
