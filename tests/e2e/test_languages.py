"""Other languages end to end: an XLS-R Russian (Cyrillic, lower-case, "|" first) and an
XLSR-53 Chinese (characters, no word delimiter) checkpoint in their Hub layouts, through
``transcribe`` and through ``run`` with the dashboard in a real terminal (tmux), on a
LibriVox clip. Their CTC heads are fitted so that the clip's captions are a known sentence
(tests/e2e/conftest.py): the test can tell right captions from wrong ones."""

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from wavlm_live.text import display_width

from .conftest import CLIP

CLI = Path(sys.executable).with_name("wavlm-live")
pytestmark = pytest.mark.slow
FLAGS = ["--no-diarization", "--no-embeddings", "--dtype", "float32", "--window", "4", "--hop", "1"]  # the heads are fitted on 4 s / 1 s windows


@pytest.mark.parametrize("layout", ["xls-r-300m-ru", "xlsr-53-zh-cn"])
def test_transcribe_writes_the_captions_in_the_checkpoints_script(language_checkpoints, tmp_path, layout):
    folder, sentence = language_checkpoints[layout]
    out = subprocess.run([str(CLI), "transcribe", str(CLIP), "-o", str(tmp_path / "clip"), "--ctc-model", str(folder),
                          *FLAGS], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "clip.txt").read_text(encoding="utf-8") == sentence + "\n"
    events = [json.loads(line) for line in (tmp_path / "clip.jsonl").read_text(encoding="utf-8").splitlines()]
    finals = [e for e in events if e["type"] == "caption" and e["final"]]
    words = [w for e in finals for w in e["words"]]
    expected = sentence.split() if layout == "xls-r-300m-ru" else list(sentence)  # a Chinese character is a word
    assert [w["text"] for w in words] == expected
    assert all(0 <= a["start"] < a["end"] <= b["start"] for a, b in zip(words, words[1:]))
    srt = (tmp_path / "clip.srt").read_text(encoding="utf-8")
    cues = [block.splitlines()[2] for block in srt.strip().split("\n\n")]
    if layout == "xls-r-300m-ru":
        assert cues == ["привет мир"]
    else:  # 29 characters are 58 cells: two cues of at most 42, no spaces between characters
        assert len(cues) == 2 and "".join(cues) == sentence and all(display_width(c) <= 42 for c in cues)
    vtt = (tmp_path / "clip.vtt").read_text(encoding="utf-8")
    assert all(c in vtt for c in cues)


def capture(session):
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


@pytest.mark.parametrize("layout,cols", [("xls-r-300m-ru", 80), ("xlsr-53-zh-cn", 80), ("xlsr-53-zh-cn", 30)])
def test_dashboard_shows_cyrillic_and_chinese_captions_in_tmux(language_checkpoints, layout, cols):
    """``wavlm-live run --input CLIP`` with the dashboard in tmux: the caption reads exactly
    the sentence (Chinese in segments of 15 characters, wrapped at a narrow pane's width,
    two cells a character) and wide characters do not break the layout: every line fits the pane, the
    panel rules span it, the status line is intact."""
    assert shutil.which("tmux"), "tmux is needed: apt-get install tmux"
    folder, sentence = language_checkpoints[layout]
    session = f"wavlm-{uuid.uuid4().hex[:8]}"
    rows = 24
    # "sleep 1" first: a detached pane starts at tmux's default size and takes -x/-y a moment
    # later, a resize the app could miss if it were already starting (seen under pytest)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows),
                    f"sleep 1; {CLI} run --input {CLIP} --ctc-model {folder} {' '.join(FLAGS)} --port 0; sleep 60"],
                   check=True)
    try:
        deadline = time.monotonic() + 90
        screen, text = "", ""
        while time.monotonic() < deadline:
            screen = capture(session)
            lines = screen.splitlines()
            if any(line.startswith("─Captions") for line in lines) and "ended at" in screen:
                start = next(i for i, line in enumerate(lines) if line.startswith("─Captions")) + 1
                end = next(i for i, line in enumerate(lines) if line.startswith("─Speakers"))
                caption = [line.strip() for line in lines[start:end] if line.strip()]
                # one line per final segment, "?: " (no speaker) first; wrapped lines continue
                pieces = [re.sub(r"^\?:( |$)", "", line) for line in caption]
                text = " ".join(pieces) if layout == "xls-r-300m-ru" else "".join(pieces)
                if text == sentence:
                    break
            time.sleep(1)
        assert text == sentence, screen
        lines = screen.splitlines()
        assert all(display_width(line) <= cols for line in lines), screen
        for title in ("─Captions", "─Speakers"):
            rule = next(line for line in lines if line.startswith(title))
            assert display_width(rule) == cols and rule.endswith("──"), screen
        if layout == "xlsr-53-zh-cn" and cols < 40:
            # segments of 15 characters (the length cut: 15 words) are 3 + 30 cells: they wrap
            assert len(caption) > len([c for c in caption if c.startswith("?:")]), screen
            assert all(display_width(line) <= cols - 1 for line in caption)
        assert re.search(r"RTF \d+\.\d+", screen) and "Traceback" not in screen, screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
