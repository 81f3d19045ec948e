"""`wavlm-live demo` in a real terminal (tmux): the dashboard shows captions, the speaker
timeline, the engine stats and each speaker's spoken language (the classification task) of
the real pipeline on the bundled recording."""

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts processes, plays audio or trains: not in the fast lane

CLI = Path(sys.executable).with_name("wavlm-live")


def capture(session):
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


LANGUAGE_LINE = re.compile(r"\b(en|de|fr|es|it|pt|nl|pl|sv) \d+%")
"""A speaker's latest classification (the speakers table's Class column, or the Engine
panel's Classification lines where it fits): top label and its score."""


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
def test_demo_dashboard_in_tmux(size):
    assert shutil.which("tmux"), "tmux is needed: apt-get install tmux"
    session = f"wavlm-{uuid.uuid4().hex[:8]}"
    cols, rows = size
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows),
         f"{CLI} demo --port 0 --speed 2; sleep 60"],
        check=True,
    )
    try:
        deadline = time.monotonic() + 90
        screen = ""
        while time.monotonic() < deadline:
            screen = capture(session)
            captions = re.findall(r"\bS\d: \S+", screen)
            analysed = re.search(r"RTF (\d+\.\d+)", screen)
            classified = cols < 140 or LANGUAGE_LINE.search(screen)
            if len(captions) >= 3 and analysed and "▶ S" in screen and classified:
                break
            time.sleep(1)
        assert "DEMO" in screen, screen  # the dashboard says plainly that demo models are in use
        assert len(re.findall(r"\bS\d: \S+", screen)) >= 3, screen  # captions with speaker labels
        assert "▶ S1" in screen or "▶ S2" in screen, screen  # speaker activity rows
        assert re.search(r"RTF (\d+\.\d+)", screen), screen  # engine stats
        if cols >= 140:  # the demo's fourth model: the spoken language of each speaker's turns
            assert LANGUAGE_LINE.search(screen), screen
        assert "Traceback" not in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 20
        command = ""
        while time.monotonic() < deadline:
            command = subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_current_command}"],
                                     capture_output=True, text=True).stdout.strip()
            if command == "sleep":  # the app quit on "q" and the shell moved on
                break
            time.sleep(0.5)
        assert command == "sleep"
        assert "Traceback" not in capture(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
