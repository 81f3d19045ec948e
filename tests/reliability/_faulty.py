"""Test helper process: the real ``wavlm-live`` command line with one fault injected.

Usage: ``python _faulty.py FAULT [wavlm-live arguments...]`` where FAULT is

* ``stitch-fail:N``: the N-th analysed window's stitching raises (the stream cannot go
  on: a fatal ``engine`` error);
* ``model-fail``: every diarization model call raises (each window fails alone);
* ``stall:N:SECONDS``: the N-th captions model call takes SECONDS longer (the shared
  scheduler stalls);
* ``none``: no fault.
"""

from __future__ import annotations

import sys
import time

from wavlm_live import cli
from wavlm_live.engine import engine as engine_module
from wavlm_live.engine import tasks


def inject(fault: str) -> None:
    kind, _, rest = fault.partition(":")
    if kind == "stitch-fail":
        after = int(rest)
        apply = engine_module.Engine.apply
        calls = {"n": 0}

        def failing_apply(self, work, seconds):
            calls["n"] += 1
            if calls["n"] == after:
                raise RuntimeError("injected stitching fault")
            return apply(self, work, seconds)

        engine_module.Engine.apply = failing_apply
    elif kind == "model-fail":
        def broken(self, audios):
            raise RuntimeError("injected model fault")

        tasks.FrameRunner.activity_batch = broken
    elif kind == "stall":
        nth, seconds = rest.split(":")
        logits_batch = tasks.CTCRunner.logits_batch
        calls = {"n": 0}

        def slow(self, audios):
            calls["n"] += 1
            if calls["n"] == int(nth):
                time.sleep(float(seconds))
            return logits_batch(self, audios)

        tasks.CTCRunner.logits_batch = slow
    elif kind != "none":
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    inject(sys.argv[1])
    sys.exit(cli.main(sys.argv[2:]))
