"""listen() (``wavlm-live listen``) and examples/subscribe.py against real servers."""

from __future__ import annotations

import asyncio
import http
import socket
import sys
from pathlib import Path

from websockets.asyncio.server import serve

from wavlm_live.events import CaptionEvent, EndEvent, ErrorEvent, LevelEvent, SpeakerEvent, Word
from wavlm_live.server import listen

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscribe.py"


def final(i: int, speaker: str | None) -> CaptionEvent:
    return CaptionEvent(True, i, float(i), i + 0.9, f"SEGMENT {i}", (Word("SEGMENT", float(i), i + 0.5, speaker),),
                        speaker)


def speaker(sid: str, name: str | None) -> SpeakerEvent:
    return SpeakerEvent(sid, name, 1.0, 1, 1, None, 0.5, 1.5)


class Lines:
    """A print_fn that records what a terminal would show."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.calls: list[tuple[str, str]] = []

    def __call__(self, text: str = "", end: str = "\n", flush: bool = False) -> None:
        self.calls.append((text, end))
        if end == "\n":
            self.lines.append(text)


async def _wait_for_clients(pub, n: int) -> None:
    for _ in range(500):
        if pub.clients == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {n} clients, have {pub.clients}")


async def test_listen_prints_captions_with_speaker_labels(tools) -> None:
    out = Lines()
    async with tools.running_publisher() as (pub, bus):
        await tools.join(tools.feed(bus, [speaker("S1", None), final(0, "S1")]))
        task = asyncio.create_task(listen(pub.url, print_fn=out))
        await _wait_for_clients(pub, 1)
        await tools.join(tools.feed(bus, [
            LevelEvent(1.0, -20.0, -6.0),
            speaker("S1", "Alice"),
            CaptionEvent(False, 1, 1.0, 1.4, "SEGM"),
            final(1, "S1"),
            final(2, None),
            ErrorEvent("audio", "input overflow"),
            speaker("S2", "Bob"),
            speaker("S1", None),
            EndEvent(3.0),
        ]))
        assert await asyncio.wait_for(task, 10) == 0
    assert out.lines == [
        "connected to wavlm-live 0.1.0 (captions, diarization, embeddings)",
        "captions decoded by beam search (width 4, 2-gram LM of 9 words, alpha 0.5, beta 1.5)",
        "warning: demo models, trained on synthetic speech only; on human voices their output is not meaningful",
        "S1 joined at 0.50 s",
        "[0.00-0.90] S1: SEGMENT 0",
        'S1 is now "Alice"',
        "[1.00-1.90] S1 (Alice): SEGMENT 1",
        "[2.00-2.90] SEGMENT 2",
        "error (audio): input overflow",
        "S2 (Bob) joined at 0.50 s",
        "S1 has no name now",
        "stream ended at 3.00 s",
    ]


async def test_listen_rewrites_partials_on_one_line(tools) -> None:
    out = Lines()
    async with tools.running_publisher() as (pub, bus):
        task = asyncio.create_task(listen(pub.url, print_fn=out, partials=True, topics=["caption", "end"]))
        await _wait_for_clients(pub, 1)
        tools.feed(bus, [CaptionEvent(False, 0, 0.0, 0.5, "HEL"), CaptionEvent(False, 0, 0.0, 0.7, "HELLO"),
                         final(0, None), EndEvent(1.0)])
        assert await asyncio.wait_for(task, 10) == 0
    shown = [c for c in out.calls if c[1] == ""]
    assert shown == [("\r\x1b[2K[0.00-0.50] HEL ...", ""), ("\r\x1b[2K[0.00-0.70] HELLO ...", ""), ("\r\x1b[2K", "")]
    assert out.lines[-2:] == ["[0.00-0.90] SEGMENT 0", "stream ended at 1.00 s"]
    assert out.calls.index(("\r\x1b[2K", "")) == out.calls.index(("[0.00-0.90] SEGMENT 0", "\n")) - 1


async def test_listen_reports_server_shutdown(tools) -> None:
    out = Lines()
    async with tools.running_publisher() as (pub, bus):
        task = asyncio.create_task(listen(pub.url, print_fn=out))
        await _wait_for_clients(pub, 1)
    assert await asyncio.wait_for(task, 10) == 0
    assert out.lines[-1] == "server closed the connection (shutting down)"


async def test_listen_failures_are_one_line(tools) -> None:
    async def run(url: str, **kwargs) -> tuple[int, list[str]]:
        out = Lines()
        code = await asyncio.wait_for(listen(url, print_fn=out, **kwargs), 15)
        return code, out.lines

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    code, lines = await run(f"ws://127.0.0.1:{closed_port}")
    assert code == 1 and len(lines) == 1 and "connection refused" in lines[0]

    async with tools.running_publisher(token="tok", max_clients=1) as (pub, bus):
        code, lines = await run(pub.url)
        assert (code, len(lines)) == (1, 1) and "HTTP 401" in lines[0] and "token" in lines[0]
        code, lines = await run(pub.url, token="wrong")
        assert (code, len(lines)) == (1, 1) and "HTTP 401" in lines[0]
        holder = await tools.Sub.connect(pub.url, additional_headers={"Authorization": "Bearer tok"})
        code, lines = await run(pub.url, token="tok")
        assert (code, len(lines)) == (1, 1) and "HTTP 503" in lines[0] and "try again" in lines[0]
        await holder.close()

    def forbid(connection, request):
        return connection.respond(http.HTTPStatus.FORBIDDEN, "no\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=forbid) as server:
        port = server.sockets[0].getsockname()[1]
        code, lines = await run(f"ws://127.0.0.1:{port}")
        assert (code, len(lines)) == (1, 1) and "HTTP 403" in lines[0] and "origin" in lines[0]

    assert (await run("http://example.invalid/"))[0] == 2
    code, lines = await run("ws://127.0.0.1:1", topics=["captions"])
    assert code == 2 and "unknown topic" in lines[0]


async def test_example_subscriber_prints_labelled_captions(tools) -> None:
    async with tools.running_publisher() as (pub, bus):
        await tools.join(tools.feed(bus, [speaker("S1", "Ann"), final(0, "S1")]))
        proc = await asyncio.create_subprocess_exec(sys.executable, str(EXAMPLE), pub.url,
                                                    stdout=asyncio.subprocess.PIPE)
        await _wait_for_clients(pub, 1)
        tools.feed(bus, [final(1, "S2"), final(2, None), EndEvent(3.0)])
        stdout, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert stdout.decode().splitlines() == [
        "[0.00-0.90] S1 (Ann): SEGMENT 0",
        "[1.00-1.90] S2: SEGMENT 1",
        "[2.00-2.90] ?: SEGMENT 2",
        "stream ended at 3.00 s",
    ]


async def test_a_speaker_is_announced_when_it_first_speaks_not_before(tools) -> None:
    # A new voice's x-vector creates its speaker before its frames settle, and an enrolled
    # speaker exists before it speaks: their first_seen is 0 and means nothing yet.
    out = Lines()
    async with tools.running_publisher() as (pub, bus):
        task = asyncio.create_task(listen(pub.url, print_fn=out))
        await _wait_for_clients(pub, 1)
        await tools.join(tools.feed(bus, [
            SpeakerEvent("S1", "Alice", 0.0, 0, 1, None, 0.0, 0.0),  # enrolled, silent so far
            SpeakerEvent("S2", None, 0.0, 0, 1, None, 0.0, 0.0),  # new voice, frames not settled
            SpeakerEvent("S2", None, 0.7, 1, 2, 0.9, 2.78, 3.48),
            SpeakerEvent("S1", "Ann", 0.0, 0, 1, None, 0.0, 0.0),  # renamed before speaking
            SpeakerEvent("S1", "Ann", 1.2, 1, 1, None, 4.1, 5.3),
            SpeakerEvent("S2", "Bob", 0.9, 1, 2, 0.9, 2.78, 3.68),
            EndEvent(6.0),
        ]))
        assert await asyncio.wait_for(task, 10) == 0
    assert out.lines[3:] == [
        "S2 joined at 2.78 s",
        "S1 (Ann) joined at 4.10 s",
        'S2 is now "Bob"',
        "stream ended at 6.00 s",
    ]
    assert not any("0.00 s" in line for line in out.lines)
