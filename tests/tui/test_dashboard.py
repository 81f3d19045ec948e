"""Pilot tests: the dashboard against the real websocket server fed a recorded stream."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
import statistics
import time
from collections.abc import Callable

import pytest
from textual.events import Key
from wavlm_live.tui import DashboardApp, DashboardConfig
from wavlm_live.tui.screens import HelpScreen, RenameScreen
from websockets.asyncio.client import connect

from wavlm_live.events import CaptionEvent, DiarizationEvent, EndEvent, SpeakerEvent, StatsEvent

FAST = DashboardConfig(refresh_s=0.1, backoff_initial_s=0.2, backoff_max_s=0.4)


async def until(pilot, condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


class TimedDashboard(DashboardApp):
    """The dashboard, recording when its pause and timestamps actions (and the redraw
    their watchers do) have finished, in ``handled_at`` (action -> perf_counter)."""

    CSS_PATH = str(Path(sys.modules[DashboardApp.__module__].__file__).with_name("dashboard.tcss"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.handled_at: dict[str, float] = {}

    def action_pause(self) -> None:
        super().action_pause()
        self.handled_at["pause"] = time.perf_counter()

    def action_timestamps(self) -> None:
        super().action_timestamps()
        self.handled_at["timestamps"] = time.perf_counter()


async def key_to_handled(app: TimedDashboard, key: Key, action: str) -> float:
    """Seconds from posting ``key`` to the app (as the terminal driver does) until the
    app's action for it has run (``app.handled_at``)."""
    before = app.handled_at.get(action)
    t0 = time.perf_counter()
    app.post_message(key)
    while app.handled_at.get(action) == before:
        if time.perf_counter() - t0 > 2.0:
            raise AssertionError(f"key {key.key!r} not handled within 2 s")
        await asyncio.sleep(0.001)
    return app.handled_at[action] - t0


def top(app: DashboardApp) -> str:
    return app.top_bar.plain


def lines(app: DashboardApp) -> list[str]:
    return app.captions.plain_lines()


def final_lines(app: DashboardApp) -> list[str]:
    return [line for line in lines(app) if not line.startswith("…")]


def finals(events) -> list[CaptionEvent]:
    return [e for e in events if isinstance(e, CaptionEvent) and e.final]


def last_speakers(events) -> dict[str, SpeakerEvent]:
    out: dict[str, SpeakerEvent] = {}
    for e in events:
        if isinstance(e, SpeakerEvent):
            out[e.id] = e
    return out


async def test_captions_speakers_and_activity_appear(make_server, recording, hello):
    server = make_server()
    app = DashboardApp(server.url, config=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "live" in top(app), "the live state")
        server.feed(recording)
        want = [f"{e.speaker}: {e.text}" for e in finals(recording)]
        await until(pilot, lambda: lines(app) == want, "all final captions, in order")
        await until(pilot, lambda: "ended at 0:26.0" in top(app), "the end of the stream")

        table = app.speakers_table
        speakers = last_speakers(recording)
        assert table.row_count == len(speakers) == 2
        total = sum(s.talk_time for s in speakers.values())
        for sid, s in speakers.items():
            row = table.cells(sid)
            assert row[1] == sid
            assert row[3] == f"{s.talk_time:.1f}s"
            assert row[4] == f"{100 * s.talk_time / total:.0f}%"
            assert row[5] == str(s.turns)
            assert row[7] == f"{s.similarity:.2f}"

        timeline = app.timeline.render().plain.splitlines()
        assert [r.split()[0] for r in timeline[:3]] == ["S1", "S2", "overlap"]
        # the recording has 0.8 s of overlapping speech (S1 and S2 from 15.78 s to 16.58 s)
        assert 1 <= timeline[2].count("━") <= 4
        assert "█" in timeline[0] and "█" in timeline[1]

        stats = app.stats_bar.plain
        last = [e for e in recording if isinstance(e, StatsEvent)][-1]
        assert f"RTF {last.rtf:.2f}" in stats and f"lag {last.lag:.2f}s" in stats
        assert "clients 1" in stats and hello["models"]["captions"] in stats
        assert "DEMO" not in top(app)


async def test_real_engine_recording_is_shown(make_server, engine_recording, hello):
    """The stream the real pipeline published (demo checkpoints, so the words are noise):
    every final caption appears, split by speaker within a segment, and every speaker."""
    demo_hello = dict(hello, demo=True, hop=1.0, models={t: f"demo/{t}" for t in hello["models"]})
    server = make_server(hello=demo_hello)
    app = DashboardApp(server.url, config=FAST)
    want = []
    for e in finals(engine_recording):  # one line per run of words by the same speaker
        runs: list[tuple[str | None, list[str]]] = []
        for w in e.words:
            if runs and runs[-1][0] == w.speaker:
                runs[-1][1].append(w.text)
            else:
                runs.append((w.speaker, [w.text]))
        want += [f"{speaker or '?'}: {' '.join(words)}" for speaker, words in runs]
    speakers = list(last_speakers(engine_recording))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "live" in top(app), "the live state")
        server.feed(engine_recording, rate=1000.0)
        await until(pilot, lambda: app.state.ended is not None, "the end of the stream")
        await until(pilot, lambda: final_lines(app) == want, "every final caption, by speaker")
        assert [app.speakers_table.selected_speaker] == speakers[:1]
        assert app.speakers_table.row_count == len(speakers) >= 2
        rows = app.timeline.render().plain.splitlines()
        assert [r.replace("▶", "").split()[0] for r in rows[: len(speakers)]] == speakers
        assert "DEMO MODELS" in top(app)


async def test_partial_text_is_replaced_by_final(make_server, recording):
    server = make_server()
    app = DashboardApp(server.url, config=FAST)
    first_final = next(i for i, e in enumerate(recording) if isinstance(e, CaptionEvent) and e.final)
    last_partial = max(i for i in range(first_final)
                       if isinstance(recording[i], CaptionEvent) and not recording[i].final)
    partial = recording[last_partial]
    assert partial.segment == 0 and not partial.final
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "live" in top(app), "the live state")
        server.feed(recording[: last_partial + 1])
        await until(pilot, lambda: lines(app) == [f"… S1: {partial.text}"], "the partial caption alone")

        server.feed(recording[last_partial + 1 : first_final + 1])
        final = recording[first_final]
        await until(pilot, lambda: lines(app) == [f"S1: {final.text}"], "the final caption in place of the partial")
        assert final.text.startswith(partial.text)


async def test_rename_round_trips_to_every_client(make_server, recording):
    server = make_server()
    app = DashboardApp(server.url, config=FAST)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "live" in top(app), "the live state")
        server.feed(recording)
        await until(pilot, lambda: app.speakers_table.row_count == 2, "two speakers")
        await until(pilot, lambda: app.state.ended is not None, "the end of the stream")
        async with connect(server.url) as other:
            await pilot.press("down")  # select S2 (cursor starts on S1)
            await pilot.press("r")
            assert isinstance(app.screen, RenameScreen) and app.screen.speaker == "S2"
            await pilot.pause(0.3)  # the refresh timer keeps running under the modal
            await pilot.press(*"Alice", "enter")
            assert not isinstance(app.screen, RenameScreen)

            renamed = None
            while renamed is None:
                msg = json.loads(await other.recv())
                if msg["type"] == "speaker" and msg["id"] == "S2" and msg["name"] == "Alice":
                    renamed = msg
        assert server.control.renames == [("S2", "Alice")]
        await until(pilot, lambda: app.state.speakers["S2"].name == "Alice", "the renamed speaker event")
        await until(pilot, lambda: app.speakers_table.cells("S2")[2] == "Alice",
                    "the new name in the speakers table")
        want = [f"{'Alice' if e.speaker == 'S2' else e.speaker}: {e.text}" for e in finals(recording)]
        await until(pilot, lambda: lines(app) == want, "captions relabelled with the new name")
        assert "Alice" in app.timeline.render().plain

        # escape cancels a rename: nothing is sent
        await pilot.press("r")
        assert isinstance(app.screen, RenameScreen)
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert server.control.renames == [("S2", "Alice")]


async def test_disconnect_shows_reconnecting_then_live_again(make_server, recording):
    server = make_server()
    app = DashboardApp(server.url, config=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "● live" in top(app), "the live state")
        fed = recording[:120]
        server.feed(fed).join()
        last = [e for e in fed if isinstance(e, CaptionEvent)][-1]  # drawn last: the client is done
        await until(pilot, lambda: len(lines(app)) >= 2 and lines(app)[-1].endswith(last.text),
                    "the captions fed so far")
        before = lines(app)

        server.stop()
        await until(pilot, lambda: "reconnecting" in top(app), "the reconnecting state")
        assert app.link.attempt >= 1
        await pilot.pause(1.0)  # several failed attempts with backoff: still running, still showing
        assert "reconnecting" in top(app) and "(try " in top(app)
        assert lines(app) == before

        server.start()  # same port
        await until(pilot, lambda: "● live" in top(app), "live again after the server came back")
        server.feed(recording[120:])
        want = [f"{e.speaker}: {e.text}" for e in finals(recording)]
        await until(pilot, lambda: lines(app) == want, "the rest of the captions, without duplicates")


async def test_wrong_token_shows_auth_failed_and_stops_retrying(make_server, hello):
    server = make_server(token="s3cret-token")
    app = DashboardApp(server.url, token="wrong", config=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "auth failed" in top(app), "the auth failed state")
        await pilot.pause(1.0)  # backoff would have retried several times by now
        assert app.link.state == "auth failed"
        assert not [w for w in app.workers if w.group == "network" and w.is_running]
        await pilot.press("q")
    assert app.return_value == 1

    good = DashboardApp(server.url, token="s3cret-token", config=FAST)
    async with good.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "● live" in top(good), "the live state with the right token")
        assert good.state.hello is not None and good.state.hello["models"] == hello["models"]
        await pilot.press("q")
    assert good.return_value == 0


async def test_demo_models_are_flagged(make_server, hello):
    server = make_server(hello=dict(hello, demo=True))
    app = DashboardApp(server.url, config=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "DEMO MODELS" in top(app), "the DEMO MODELS badge")
        assert "demo checkpoints (synthetic-speech models" in app.stats_bar.plain


async def test_engine_pane_says_how_captions_are_decoded(make_server, hello):
    decoder = "beam search (width 24, 2-gram LM of 25660 words, alpha 0.8, beta 3.0)"
    server = make_server(hello=dict(hello, captions_decoder=decoder))
    app = DashboardApp(server.url, config=FAST)
    async with app.run_test(size=(200, 48)) as pilot:
        await until(pilot, lambda: "captions decoded by" in app.engine_info.plain, "the decoder line")
        assert app.engine_info.display
        assert f"captions decoded by {decoder}" in app.engine_info.plain


async def test_keys_timestamps_pause_clear_help_and_save(make_server, recording, tmp_path):
    server = make_server()
    path = tmp_path / "transcript.txt"
    app = DashboardApp(server.url, transcript_path=path, config=FAST)
    all_finals = finals(recording)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "live" in top(app), "the live state")
        split = recording.index(all_finals[2]) + 1
        server.feed(recording[:split]).join()
        await until(pilot, lambda: len(final_lines(app)) == 3, "three finals")

        await pilot.press("t")
        await until(pilot, lambda: lines(app)[0] == f"[0:00.6] S1: {all_finals[0].text}", "timestamps")
        await pilot.press("t")
        await until(pilot, lambda: lines(app)[0] == f"S1: {all_finals[0].text}", "timestamps hidden")

        await pilot.press("space")
        assert "PAUSED" in top(app)
        server.feed(recording[split:]).join()
        await until(pilot, lambda: app.state.ended is not None, "the rest of the stream (paused)")
        await pilot.pause(0.3)
        assert len(final_lines(app)) == 3  # the view did not move
        await pilot.press("space")
        assert "PAUSED" not in top(app)
        await until(pilot, lambda: len(lines(app)) == len(all_finals), "the view catching up")

        await pilot.press("s")
        await until(pilot, lambda: path.exists(), "the transcript file")
        text = path.read_text().splitlines()
        assert text[0].startswith("# wavlm-live transcript from ws://127.0.0.1:")
        body = [line for line in text if not line.startswith("#")]
        assert body[0] == f"[0:00:00.60 - 0:00:08.02] S1: {all_finals[0].text}"
        assert body[1] == f"[0:00:08.62 - 0:00:11.28] S2: {all_finals[1].text}"
        assert len(body) == len(all_finals)
        assert any("transcript.txt" in n.message and str(tmp_path) in n.message for n in app._notifications)
        # the same captions as subtitles, read back by pysrt and webvtt-py
        import pysrt
        import webvtt

        words = [w for e in all_finals for w in e.words]
        srt = pysrt.open(str(tmp_path / "transcript.srt"))
        assert " ".join(item.text.split(": ", 1)[1] for item in srt).split() == [w.text for w in words]
        assert srt[0].text.startswith("S1: ") and abs(srt[0].start.ordinal / 1000 - words[0].start) < 0.01
        vtt = webvtt.read(str(tmp_path / "transcript.vtt"))
        assert len(vtt) == len(srt) and vtt[0].voice == "S1"
        rttm = (tmp_path / "transcript.rttm").read_text().splitlines()
        turns = [t for e in recording if isinstance(e, DiarizationEvent) for t in e.turns]
        assert len(rttm) == len(turns) > 0 and rttm[0].split()[7] == sorted(turns, key=lambda t: t.start)[0].speaker

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        await pilot.press("c")
        await until(pilot, lambda: lines(app) == [], "cleared captions")
        assert app.speakers_table.row_count == 2  # speakers stay


async def test_event_flood_keeps_keys_fast_and_history_bounded(make_server, recording, shifted):
    """With the captions pane full (200 segments), 200 events/s for 4 s: each key press is
    handled within 100 ms (``t`` re-wraps the whole pane), and memory stays bounded.
    The backlog of 320 finals at 1000/s is far beyond any engine's rate (one final per
    hop): a queue that holds it all, so that flow control (tested in tests/reliability)
    cannot close a dashboard that a loaded machine slows down for a moment."""
    server = make_server(queue_size=1024)
    config = DashboardConfig(transcript=300, window_s=10.0, refresh_s=0.2, backoff_initial_s=0.2)
    app = TimedDashboard(server.url, config=config)
    stream = [e for e in recording if not isinstance(e, EndEvent)]
    backlog = []  # 320 final captions, published at 1000 per second
    for copy in range(64):
        backlog += shifted(finals(stream), 26.0 * copy, 5 * copy)
    flood = []  # 800 events of every type, published at 200 events/s
    for copy in range(64, 68):
        flood += shifted(stream, 26.0 * copy, 5 * copy)
    flood = flood[:800]
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "live" in top(app), "the live state")
        server.feed(backlog, rate=1000.0).join()
        log = app.captions
        await until(pilot, lambda: app.state.finals_total == len(backlog), "the backlog")
        await until(pilot, lambda: log.entry_count == config.history, "a full captions pane")

        feeder = server.feed(flood, rate=200.0)
        latencies = []
        await pilot.pause(0.5)
        while feeder.is_alive() and len(latencies) < 12:
            key, char, action = ("t", "t", "timestamps") if len(latencies) % 2 else ("space", " ", "pause")
            latencies.append(await key_to_handled(app, Key(key, char), action))
            await asyncio.sleep(0.2)
        feeder.join()
        if app.paused:
            await pilot.press("space")
        last_stats = [e for e in flood if isinstance(e, StatsEvent)][-1]
        await until(pilot, lambda: app.state.stats is not None
                    and app.state.stats.windows_analysed == last_stats.windows_analysed, "the whole flood")
        assert len(latencies) >= 10, "the flood ended before the keys were measured"
        print(f"key-to-handled latency under 200 events/s: median {1000 * statistics.median(latencies):.1f} ms, "
              f"max {1000 * max(latencies):.1f} ms over {len(latencies)} presses")
        assert max(latencies) < 0.100

        n_finals = len(backlog) + len(finals(flood))
        assert app.state.finals_total == n_finals > config.transcript
        assert len(app.state.finals) == config.transcript
        await until(pilot, lambda: log.entry_count == config.history, "the caption view at its bound")
        assert log.line_count <= 3 * config.history + 2
        assert len(app.state.frames) <= round(config.window_s / 0.02)
        assert app.state.dropped == 0  # a dashboard keeps up with 200 events/s


@pytest.mark.parametrize("url", ["http://localhost:1", "localhost:8765", "ws://", 42])
def test_bad_url_is_refused(url):
    with pytest.raises(ValueError, match="ws:// or wss://"):
        DashboardApp(url)  # type: ignore[arg-type]


def test_run_dashboard_returns_2_for_a_bad_url(capsys):
    from wavlm_live.tui import run_dashboard

    assert run_dashboard("http://localhost:1") == 2
    assert "ws:// or wss://" in capsys.readouterr().err


async def test_classifications_show_per_speaker_and_in_the_keyword_log(make_server, hello):
    from wavlm_live.events import ClassificationEvent, Label

    server = make_server(hello=dict(hello, tasks=[*hello["tasks"], "classification"]))
    app = DashboardApp(server.url, config=FAST)

    def speaker(sid: str, t: float) -> SpeakerEvent:
        return SpeakerEvent(id=sid, name=None, talk_time=t, turns=1, updates=1, similarity=None,
                            first_seen=0.0, last_seen=t)

    events = [
        speaker("S1", 2.0), speaker("S2", 1.0),
        ClassificationEvent(start=0.0, end=2.0, speaker="S1", scope="turn",
                            labels=(Label("fr", 0.91), Label("es", 0.05))),
        ClassificationEvent(start=2.0, end=3.0, speaker="S2", scope="turn", labels=(Label("de", 0.6),)),
        ClassificationEvent(start=3.0, end=5.0, speaker="S1", scope="turn", labels=(Label("it", 0.7),)),
        ClassificationEvent(start=0.0, end=1.0, speaker=None, scope="window", labels=(Label("_silence_", 0.9),)),
        ClassificationEvent(start=1.0, end=2.0, speaker=None, scope="window", labels=(Label("yes", 0.8),)),
        ClassificationEvent(start=2.0, end=3.0, speaker=None, scope="window", labels=(Label("stop", 0.7),)),
        EndEvent(t=5.0),
    ]
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: "live" in top(app), "the live state")
        server.feed(events)
        await until(pilot, lambda: app.state.ended is not None, "the end of the stream")
        await until(pilot, lambda: app.speakers_table.row_count == 2, "two speakers")
        await pilot.pause(0.2)
        # the latest turn label of each speaker in its row, the keywords in the Engine pane
        assert app.speakers_table.cells("S1")[-1] == "it 70%"
        assert app.speakers_table.cells("S2")[-1] == "de 60%"
        assert "Class" in app.speakers_table.render().plain.splitlines()[0]
        info = app.engine_info.render().plain if hasattr(app.engine_info, "render") else ""
        assert [e.labels[0].label for e in app.state.keywords] == ["yes", "stop"]
        assert "keywords yes@" in info and "stop@" in info, info
