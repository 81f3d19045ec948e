"""Snapshot tests of the main screen at 80x24 and 160x48, fed a fixed recorded stream
through the real server. Nothing on screen depends on the wall clock or the port.

Update after a deliberate change with ``pytest tests/tui/test_snapshots.py
--snapshot-update`` and look at the new SVGs before committing them.
"""

from __future__ import annotations

import time

from wavlm_live.tui import DashboardApp, DashboardConfig

from wavlm_live.events import StatsEvent


async def until(pilot, condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def fed(server, app: DashboardApp, events):
    """A ``run_before`` that feeds ``events`` once the app is live, ten engine hops at a
    time (each hop ends with a stats event), waiting for the app to receive each batch:
    the server's per-client queue never fills, so nothing is dropped whatever the load."""
    hops = [i for i, e in enumerate(events) if isinstance(e, StatsEvent)][9::10]
    if hops[-1] != len(events) - 1:
        hops.append(len(events) - 1)

    async def run_before(pilot) -> None:
        await until(pilot, lambda: app.link.state == "live" and app.state.hello is not None, "the live state")
        start = 0
        for stop in hops:
            server.feed(events[start : stop + 1]).join()
            last = events[stop]
            await until(pilot, lambda last=last: app.state.ended is not None if last.TYPE == "end"
                        else app.state.stats == last, f"event {stop}")
            start = stop + 1
        assert app.state.dropped == 0
        await until(pilot, lambda: (app.refresh_view(), app.captions.pending == 0)[1], "the captions pane")
        await pilot.pause(0.2)

    return run_before


def test_main_screen_80x24_mid_stream_demo(snap_compare, make_server, recording, hello):
    """Mid-stream at 18 s: S2 talks over the end of S1's turn (overlap row), S2's partial
    caption is dimmed after the finals, the DEMO MODELS badge is up."""
    server = make_server(hello=dict(hello, demo=True))
    app = DashboardApp(server.url, config=DashboardConfig(refresh_s=0.1))
    cut = next(i for i, e in enumerate(recording) if isinstance(e, StatsEvent) and e.t >= 18.0)
    events = recording[: cut + 1]
    assert snap_compare(app, terminal_size=(80, 24), run_before=fed(server, app, events))


def test_main_screen_160x48_ended(snap_compare, make_server, recording, hello):
    """The whole conversation: five captions, two speakers, the wide layout with the
    speakers table and engine panel beside the captions."""
    server = make_server(hello=hello)
    app = DashboardApp(server.url, config=DashboardConfig(refresh_s=0.1))
    assert snap_compare(app, terminal_size=(160, 48), run_before=fed(server, app, recording))
