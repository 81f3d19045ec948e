"""Write ``data/conversation.jsonl``: the fixed event stream the dashboard tests replay.

The five LibriVox utterances of ``tests/data/librivox-transcription.txt`` are laid on a
stream-time axis as a conversation of two speakers (S1, S2) with one stretch of
overlapping speech, and turned into the events an engine with a 0.5 s hop and 1.5 s
settling latency publishes: level, settled diarization, partial then final captions,
speaker updates and stats, then ``end``. Deterministic: no clocks, no randomness. The
events go through an ``EventBus`` into the engine's ``JsonlWriter``, so the file has the
format of any recorded session (``wavlm-live`` JSONL event log) and can be swapped for one.

Run ``python tests/tui/make_recording.py`` to rewrite the file.
"""

from __future__ import annotations

import math
from pathlib import Path

from wavlm_live.events import (
    CaptionEvent,
    DiarizationEvent,
    EndEvent,
    Event,
    LevelEvent,
    SpeakerEvent,
    StatsEvent,
    Turn,
    Word,
)

DATA = Path(__file__).resolve().parents[1] / "data"
FRAME = 0.02
HOP = 0.5
LATENCY = 1.5
WORD_S = 0.34

def utterances() -> list[str]:
    """The five reference transcripts, upper case (LibriSpeech vocabulary)."""
    out = []
    for line in (DATA / "librivox-transcription.txt").read_text().splitlines():
        text = line.split("<s>")[1].split("</s>")[0].strip()
        out.append(text.upper())
    return out


def script() -> list[tuple[str, float, list[Word]]]:
    """``(speaker, start_s, words)`` per utterance; the 4th overlaps the 3rd by 0.8 s."""
    speakers = ["S1", "S2", "S1", "S2", "S1"]
    out = []
    t = 0.6
    for i, (speaker, text) in enumerate(zip(speakers, utterances(), strict=True)):
        if i == 3:
            t -= 1.4  # S2 starts 0.8 s before S1 stops (gap 0.6 s otherwise)
        words = []
        for j, w in enumerate(text.split()):
            start = round(t + j * WORD_S, 2)
            words.append(Word(w, start, round(start + WORD_S - 0.06, 2), speaker))
        out.append((speaker, t, words))
        t = words[-1].end + 0.6
    return out


def events() -> list[Event]:
    """The whole stream, in publish order."""
    plan = script()
    words = sorted((w for _, _, ws in plan for w in ws), key=lambda w: (w.start, w.speaker))
    stream_end = math.ceil((max(w.end for w in words) + 0.5) / HOP) * HOP
    segments = [ws for _, _, ws in plan]
    out: list[Event] = []
    settled = 0.0
    next_segment = 0
    talk: dict[str, float] = {}
    turns: dict[str, int] = {}
    seen: dict[str, tuple[float, float]] = {}
    updates: dict[str, int] = {}
    open_turns: dict[str, float] = {}
    k = 0
    while True:
        k += 1
        now = min(k * HOP, stream_end + LATENCY)
        audio_t = min(now, stream_end)
        active_now = [w for w in words if w.start <= audio_t <= w.end + 0.1]
        rms = -22.0 - 1.5 * (k % 5) if active_now else -58.0
        out.append(LevelEvent(t=audio_t, rms_db=rms, peak_db=rms + 9.0))
        new_settled = max(0.0, min(now - LATENCY, stream_end))
        if new_settled > settled:
            n = round((new_settled - settled) / FRAME)
            labels = []
            ended = []
            for i in range(n):
                c = settled + (i + 0.5) * FRAME
                active = tuple(sorted({s for s, st, ws in plan if st <= c < ws[-1].end}))
                labels.append(active)
                for s in active:
                    talk[s] = talk.get(s, 0.0) + FRAME
                    first, _ = seen.get(s, (c - FRAME / 2, 0.0))
                    seen[s] = (first, c + FRAME / 2)
                    if s not in open_turns:
                        open_turns[s] = c - FRAME / 2
                for s in list(open_turns):
                    if s not in active:
                        turns[s] = turns.get(s, 0) + 1
                        ended.append(Turn(s, round(open_turns.pop(s), 2), round(c - FRAME / 2, 2)))
            out.append(DiarizationEvent(start=round(settled, 2), end=round(new_settled, 2), frame=FRAME,
                                        labels=tuple(labels), turns=tuple(ended)))
            for s in sorted({x for lab in labels for x in lab}):
                updates[s] = updates.get(s, 0) + 1
                sim = None if updates[s] == 1 else round(0.62 + 0.05 * (updates[s] % 6) + (0.08 if s == "S2" else 0), 3)
                first, last = seen[s]
                out.append(SpeakerEvent(id=s, name=None, talk_time=round(talk[s], 2),
                                        turns=turns.get(s, 0) + (1 if s in open_turns else 0),
                                        updates=updates[s], similarity=sim,
                                        first_seen=round(first, 2), last_seen=round(last, 2)))
            settled = new_settled
        while next_segment < len(segments) and segments[next_segment][-1].end <= settled:
            ws = segments[next_segment]
            out.append(CaptionEvent(final=True, segment=next_segment, start=ws[0].start, end=ws[-1].end,
                                    text=" ".join(w.text for w in ws), words=tuple(ws), speaker=ws[0].speaker))
            next_segment += 1
        if next_segment < len(segments):
            heard = [w for w in segments[next_segment] if w.start < audio_t]
            if heard:
                out.append(CaptionEvent(final=False, segment=next_segment, start=heard[0].start, end=heard[-1].end,
                                        text=" ".join(w.text for w in heard), words=tuple(heard),
                                        speaker=heard[0].speaker))
        out.append(StatsEvent(t=audio_t, windows_analysed=k, windows_skipped=0, rtf=0.42, lag=0.12,
                              input_overflows=0))
        if now >= stream_end + LATENCY:
            break
    out.append(EndEvent(t=stream_end))
    return out


def main() -> None:
    from wavlm_live.engine.bus import EventBus
    from wavlm_live.engine.writers import JsonlWriter

    out = Path(__file__).resolve().parent / "data" / "conversation.jsonl"
    out.parent.mkdir(exist_ok=True)
    bus = EventBus()
    with out.open("w", encoding="utf-8") as f:
        bus.subscribe(JsonlWriter(f))
        for event in events():
            bus.publish(event)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
