"""Soak: a real ``wavlm-live serve`` under many subscribers for minutes, and what it loses.

Starts the installed command line (``serve --demo --input conversation.flac --loop``, the
bundled demo models on the bundled conversation, looped at real-time pace) on a free port
and connects, for ``--minutes`` (default 10):

* ``--fast`` subscribers (default 30) that read everything at once;
* ``--slow`` subscribers (default 10) that take ``--slow-delay`` seconds (0.13) over each
  message: about 7 messages a second, half the stream's ~15, so the server must drop
  droppable messages for them and say so (``dropped``), while their final captions stay
  (a reader much slower than that is taken for one that stopped: docs/protocol.md,
  "Backpressure");
* ``--reconnecting`` clients (default 10) that connect, read for 2-8 s, close, and connect
  again, all the time.

Printed at the end, as one JSON object (and a line per figure):

* ``lost_finals_fast``: final caption segments missing between the first and last final
  each fast subscriber saw (``segment`` numbers increase by one: any gap is a loss); must
  be 0;
* ``lost_finals_slow``: the same for the slow ones (finals are never dropped: 0 too),
  ``dropped_notices_slow`` and ``dropped_messages_slow`` (the ``dropped`` counts they got);
* ``reconnects`` made and ``reconnect_failures`` (a connection that got no ``hello``);
  ``subscribers_closed_early``: fast or slow subscribers the server closed (must be 0);
* ``rss_first_minute_mib`` / ``rss_last_minute_mib``: the server's mean resident set size
  (``/proc/PID/status`` VmRSS, sampled each second) in the first and the last minute of the
  run (``--span-minutes`` minutes: 10 for the 30-minute run of issue #21), and their ratio
  (goal: within 5%);
* ``fds_start`` / ``fds_end``: the server's open file descriptors before any client
  connected and after every client closed (goal: equal);
* ``load_average``: the machine's 1-minute load average at the start and the end (the
  machine may be shared: say so next to the figures).

Usage: python bench/soak.py [--minutes 10] [--fast 30] [--slow 10] [--reconnecting 10] [--span-minutes 1]
Linux only (it reads /proc). Exit status 1 if a goal is missed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("wavlm-live")
URL_LINE = re.compile(r" on (ws://[0-9.]+:[0-9]+)")


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` (entries of ``/proc/PID/fd``)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class Finals:
    """Final caption segments one subscriber saw, and the ``dropped`` counts it got."""

    def __init__(self) -> None:
        self.segments: list[int] = []
        self.notices = 0
        self.dropped = 0

    def see(self, msg: dict) -> None:
        if msg["type"] == "caption" and msg.get("final") and not msg.get("snapshot"):
            self.segments.append(msg["segment"])
        elif msg["type"] == "dropped":
            self.notices += 1
            self.dropped += int(msg.get("count", 0))

    def lost(self) -> int:
        """Segments missing between the first and the last one seen."""
        if not self.segments:
            return 0
        return (self.segments[-1] - self.segments[0] + 1) - len(set(self.segments))


async def subscriber(url: str, until: float, delay: float, finals: Finals) -> None:
    """Read every message until ``until`` (monotonic), ``delay`` seconds over each."""
    async with connect(url, max_size=2**24, compression=None) as ws:
        while time.monotonic() < until:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, until - time.monotonic()))
            except TimeoutError:
                break
            finals.see(json.loads(raw))
            if delay:
                await asyncio.sleep(delay)


async def reconnecting(url: str, until: float, rng: random.Random, counts: dict[str, int]) -> None:
    """Connect, read for 2-8 s, close; again until ``until``."""
    while time.monotonic() < until:
        try:
            async with connect(url, max_size=2**24, compression=None, open_timeout=10) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                if hello.get("type") != "hello":
                    raise RuntimeError(f"first message {hello.get('type')!r}")
                counts["reconnects"] += 1
                stop = min(until, time.monotonic() + rng.uniform(2, 8))
                while time.monotonic() < stop:
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=max(0.1, stop - time.monotonic()))
                    except TimeoutError:
                        break
        except (OSError, TimeoutError, ConnectionClosed, RuntimeError):
            counts["failures"] += 1
            await asyncio.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fast", type=int, default=30)
    ap.add_argument("--slow", type=int, default=10)
    ap.add_argument("--slow-delay", type=float, default=0.13)
    ap.add_argument("--reconnecting", type=int, default=10)
    ap.add_argument("--span-minutes", type=float, default=1.0,
                    help="RSS is compared between the first and the last this many minutes (default: 1)")
    args = ap.parse_args()
    total = args.fast + args.slow + args.reconnecting
    load0 = os.getloadavg()[0]
    cmd = [str(CLI), "serve", "--demo", "--input", str(REPO / "wavlm_live" / "data" / "demo" / "conversation.flac"),
           "--loop", "--port", "0", "--max-clients", str(total + 8), "--max-clients-per-address", str(total + 8)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = ""
    for line in proc.stderr:
        if found := URL_LINE.search(line):
            url = found.group(1)
            break
    if not url:
        print(f"soak: the server did not start (exit {proc.wait()})", file=sys.stderr)
        return 1
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # drain its log
    time.sleep(2.0)
    fds_start = open_fds(proc.pid)
    seconds = args.minutes * 60
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    until = t0 + seconds

    def sample() -> None:
        while time.monotonic() < until and proc.poll() is None:
            samples.append((time.monotonic() - t0, rss_mib(proc.pid)))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    fast = [Finals() for _ in range(args.fast)]
    slow = [Finals() for _ in range(args.slow)]
    counts = {"reconnects": 0, "failures": 0, "closed_early": 0}
    rng = random.Random(0)

    async def run() -> None:
        jobs = [subscriber(url, until, 0.0, f) for f in fast]
        jobs += [subscriber(url, until, args.slow_delay, f) for f in slow]
        jobs += [reconnecting(url, until, random.Random(rng.random()), counts) for _ in range(args.reconnecting)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                counts["closed_early"] += 1
                print(f"soak: a subscriber ended early: {type(r).__name__}: {r}", file=sys.stderr)

    asyncio.run(run())
    sampler.join()
    time.sleep(3.0)  # every client has closed: let the server release its sockets
    fds_end = open_fds(proc.pid)
    proc.terminate()
    status = proc.wait(30)
    minute = min(60.0 * args.span_minutes, seconds / 3)
    first = [r for t, r in samples if t <= minute]
    last = [r for t, r in samples if t >= seconds - minute]
    report = {
        "minutes": args.minutes, "subscribers": {"fast": args.fast, "slow": args.slow, "reconnecting": args.reconnecting},
        "lost_finals_fast": sum(f.lost() for f in fast),
        "finals_per_fast_subscriber": min((len(f.segments) for f in fast), default=0),
        "lost_finals_slow": sum(f.lost() for f in slow),
        "dropped_notices_slow": sum(f.notices for f in slow),
        "dropped_messages_slow": sum(f.dropped for f in slow),
        "dropped_notices_fast": sum(f.notices for f in fast),
        "reconnects": counts["reconnects"], "reconnect_failures": counts["failures"],
        "subscribers_closed_early": counts["closed_early"],
        "rss_span_minutes": round(minute / 60, 2),
        "rss_first_minute_mib": round(sum(first) / max(1, len(first)), 1),
        "rss_last_minute_mib": round(sum(last) / max(1, len(last)), 1),
        "fds_start": fds_start, "fds_end": fds_end,
        "server_exit": status,
        "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    report["rss_ratio"] = round(report["rss_last_minute_mib"] / max(1e-9, report["rss_first_minute_mib"]), 4)
    for key, value in report.items():
        print(f"{key}: {value}")
    print(json.dumps(report))
    ok = (report["lost_finals_fast"] == 0 and report["lost_finals_slow"] == 0 and report["finals_per_fast_subscriber"] > 0
          and abs(report["rss_ratio"] - 1) <= 0.05 and fds_end == fds_start and status == 0
          and report["reconnect_failures"] == 0 and counts["closed_early"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
