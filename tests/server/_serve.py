"""Test helper process: ``run_server`` in the main thread, an engine stand-in thread.

Prints ``URL ws://...`` once listening. Each stdin line ``go SECONDS`` makes the engine
thread publish, for SECONDS, final captions at ``--final-rate`` Hz (text: the publish
time, unix seconds, then ``--text-bytes`` of filler), level events at 100 Hz and stats
at 20 Hz, then an EndEvent. Exits with run_server's code on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time

from wavlm_live.engine.bus import EventBus
from wavlm_live.events import CaptionEvent, EndEvent, LevelEvent, StatsEvent
from wavlm_live.server import ServerConfig, run_server

HELLO = {"version": "0.1.0", "sample_rate": 16000, "frame": 0.02, "tasks": ["captions"],
         "models": {"captions": "tiny-ctc"}, "window": 4.0, "hop": 1.0, "demo": True}


def engine(bus: EventBus, args: argparse.Namespace) -> None:
    segment = 0
    for line in sys.stdin:
        if not line.startswith("go"):
            continue
        seconds = float(line.split()[1])
        start = time.monotonic()
        filler = "X" * args.text_bytes
        tick = 0
        while (now := time.monotonic() - start) < seconds:
            t = now
            if tick % args.final_every == 0:
                bus.publish(CaptionEvent(True, segment, t, t + 0.5, f"{time.time():.6f} {filler}"))
                segment += 1
            bus.publish(LevelEvent(t, -20.0, -6.0))
            if tick % 5 == 0:
                bus.publish(StatsEvent(t, tick, 0, 0.3, 0.05))
            tick += 1
            time.sleep(max(0.0, start + tick * 0.01 - time.monotonic()))
        bus.publish(EndEvent(time.monotonic() - start))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--final-every", type=int, default=2, help="a final every N level ticks (10 ms)")
    parser.add_argument("--text-bytes", type=int, default=100)
    parser.add_argument("--max-clients", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    bus = EventBus()
    threading.Thread(target=engine, args=(bus, args), daemon=True).start()
    config = ServerConfig(port=0, max_clients=args.max_clients)
    return run_server(bus, HELLO, None, config, on_ready=lambda url: print("URL", url, flush=True))


if __name__ == "__main__":
    sys.exit(main())
