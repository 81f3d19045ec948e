"""End to end: a real headless Chromium (Debian's package) opens the page served by
`wavlm-live serve --demo`, talks into it from a fake microphone fed with a recording
(`--use-file-for-fake-audio-capture`), and the test reads the captions and speakers from
the page's DOM through the DevTools protocol (`Runtime.evaluate`). A second page watches
the same session by id. No mock of the browser."""

from __future__ import annotations

import asyncio
import difflib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from wavlm_live.cli.app import demo_recording

CLI = Path(sys.executable).with_name("wavlm-live")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READ_PAGE = """document.getElementById('session') === null ? 'null' : JSON.stringify({
  finals: [...document.querySelectorAll('#captions li')].map(li =>
    [li.dataset.speaker, li.querySelector('.text').textContent]),
  speakers: [...document.querySelectorAll('#speakers li')].map(li => li.dataset.id),
  session: document.getElementById('session').textContent,
  status: document.getElementById('status').textContent,
  errors: document.getElementById('errors').textContent,
})"""


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if json.loads(r.read())["ready"]:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("server not ready")


class DevTools:
    """One page target of a running Chromium, driven over the DevTools protocol."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.n = 0

    async def call(self, method: str, **params) -> dict:
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.n:
                assert "error" not in msg, msg
                return msg["result"]

    async def read(self) -> dict | None:
        """The page's state, or ``None`` while it is not (yet) the wavlm-live page."""
        result = await self.call("Runtime.evaluate", expression=READ_PAGE, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return json.loads(result["result"]["value"])


async def _page(debug_port: int, url: str) -> tuple[DevTools, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/version", timeout=5) as r:
        browser_url = json.loads(r.read())["webSocketDebuggerUrl"]
    browser = await connect(browser_url, max_size=None)
    target = await DevTools(browser).call("Target.createTarget", url="about:blank")
    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=5) as r:
        page = next(t for t in json.loads(r.read()) if t["id"] == target["targetId"])
    ws = await connect(page["webSocketDebuggerUrl"], max_size=None)
    tools = DevTools(ws)
    await tools.call("Page.navigate", url=url)
    return tools, browser


async def _until(tools: DevTools, pred, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    state = await tools.read()
    while state is None or not pred(state):
        assert time.monotonic() < deadline, f"page never got there: {state}"
        await asyncio.sleep(0.5)
        state = await tools.read()
    return state


@pytest.mark.slow
async def test_browser_page_talks_into_a_session_and_another_page_watches_it(tmp_path: Path) -> None:
    audio, rate = sf.read(demo_recording(), dtype="float32")
    fake_mic = tmp_path / "mic.wav"
    sf.write(fake_mic, audio[: 30 * rate], rate, subtype="PCM_16")  # two synthetic voices
    port = _port()
    server = subprocess.Popen([str(CLI), "serve", "--demo", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    profile = tmp_path / "profile"
    chromium = None
    try:
        _wait_ready(port, server)
        chromium = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={fake_mic}%noloop",
             "--autoplay-policy=no-user-gesture-required", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().strip()):
            assert time.monotonic() < deadline and chromium.poll() is None, "chromium did not start"
            await asyncio.sleep(0.2)
        debug_port = int(active.read_text().split()[0])

        talker, b1 = await _page(debug_port, f"http://127.0.0.1:{port}/?mic=1")
        state = await _until(talker, lambda s: s["session"] != "none", 30)
        session = state["session"]
        assert state["status"].startswith("live: session"), state
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert json.loads(r.read())["sessions"] == 1

        watcher, b2 = await _page(debug_port, f"http://127.0.0.1:{port}/?watch={session}")
        await _until(watcher, lambda s: s["status"] == f"watching session {session}", 30)

        # the recording's first sentences, by two voices, with the speakers list
        state = await _until(talker, lambda s: len(s["finals"]) >= 4 and len(s["speakers"]) >= 2, 90)
        assert state["errors"] == "", state
        # the page shows the recording's words (the demo models spell them roughly: compare
        # with the reference transcript of the same stretch, character by character)
        got = " ".join(text for _, text in state["finals"])
        reference = (demo_recording().with_suffix(".txt").read_text().split())
        want = " ".join(reference[: len(got.split())])
        assert difflib.SequenceMatcher(None, want, got).ratio() > 0.75, (want, got)
        assert {speaker for speaker, _ in state["finals"]} <= set(state["speakers"])
        assert {"S1", "S2"} <= {speaker for speaker, _ in state["finals"]}
        seen = await _until(watcher, lambda s: len(s["finals"]) >= 4, 30)
        assert seen["finals"][:4] == state["finals"][:4]
        for b in (b1, b2):
            await b.close()
    finally:
        if chromium is not None:
            chromium.kill()
            chromium.wait(10)
        server.terminate()
        server.wait(30)
    assert server.returncode == 0
