#!/usr/bin/env python3
"""Synthetic espeak-ng speech corpus for the wavlm-live demo checkpoints.

Everything here is reproducible from a seed: the sentence source (the example sentences
of WordNet 3.0, Debian package `wordnet-base`), the voice list (espeak-ng's mbrola-less
English voices `gmw/en*` crossed with its `+variant` voice variants) and every random
choice (speaking rate, pitch, pauses, overlaps, gains) come from `numpy.random.Generator`s
seeded from the command line. The language-identification corpus (`build-lid`) takes its
sentences in nine languages from the translated message catalogs of Debian's base system
(GETTEXT_DOMAINS) and its voices from LID_VOICES.

Splits
  sentences  train / val / test, disjoint (seeded shuffle of the normalised sentences).
  variants   train / val / test, disjoint (the val and test variants are never heard in
             training; "held-out voice variants").
  identity   a speaker is (base voice, variant, pitch): e.g. ``en-US+Annie@p35``.

Commands (all write 16 kHz mono audio)
  build OUT                   training corpus: OUT/meta.json and, per split (train, val,
                              val_unseen), SPLIT/audio.npy (int16, all utterances end to
                              end) + SPLIT/utts.jsonl (one utterance per line).
  eval-captions OUT           NAME.wav + NAME.txt clips of test sentences
                              (--voices seen: training identities, unseen: test variants).
  eval-diarization OUT        NAME.wav + NAME.rttm (+ NAME.txt) two-speaker conversations
                              of test sentences by test-variant identities.
  eval-verification OUT       NAME.wav clips by test-variant identities + trials.txt.
  conversation OUT.flac       one multi-speaker conversation (+ .txt, .rttm) for the demo.
  build-lid OUT               spoken-language-identification corpus (as build, utterances
                              in LID_VOICES' languages, sentences from the gettext message
                              catalogs; utts.jsonl rows add lang and key).
  eval-lid CORPUS OUT         NAME.wav + NAME.label clips of test sentences (one language
                              and one identity each; --voices unseen: test variants).

The eval folder format is documented in docs/demo-models.md: one clip per NAME.wav (or
.flac), its transcript in NAME.txt (one line, LibriSpeech letters), its diarization
reference in NAME.rttm (NIST RTTM SPEAKER lines), and for verification a trials.txt with
lines ``LABEL ENROL TEST`` (VoxCeleb convention: 1 = same speaker, 0 = different; paths
relative to the folder).

Run: ``python scripts/corpus.py build corpus/demo --train-hours 4``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from wavlm_live.engine.writers import write_rttm as _write_rttm
from wavlm_live.metrics import normalize_transcript

SAMPLE_RATE = 16000
"""Output sample rate, Hz (espeak-ng synthesises at 22050 Hz; resampled with soxr)."""
FRAME_HOP = 320
"""WavLM frame hop in samples (20 ms at 16 kHz)."""
FRAME_WINDOW = 400
"""WavLM receptive field of one frame in samples (25 ms)."""

BASE_VOICES = (
    "en",  # English (Great Britain)
    "en-US",
    "en-GB-scotland",
    "en-GB-x-gbclan",  # Lancaster
    "en-GB-x-rp",  # Received Pronunciation
    "en-GB-x-gbcwmd",  # West Midlands
    "en-029",  # Caribbean
    "en-US-nyc",
)
"""espeak-ng English voices of the `gmw` family (no mbrola data needed)."""

EXCLUDED_VARIANTS = ("fast", "Mr serious")
"""`fast` is espeak-ng's unstable speed test; `Mr serious` has a space in its file name."""

PITCHES = (35, 65)
"""espeak-ng `-p` pitch settings (0-99, default 50) that, with voice and variant, make a speaker identity."""
PITCH_JITTER = 3
"""Per-utterance pitch jitter (+-, espeak units) so that identities are not one exact pitch."""
SPEED_RANGE = (140, 210)
"""espeak-ng `-s` speaking rate range in words per minute (default 175), drawn per utterance."""

SENTENCE_SOURCE = Path("/usr/share/wordnet")
"""WordNet 3.0 data files (Debian `wordnet-base`, WordNet 3.0 licence: free use, copy and
redistribution with the copyright notice, Princeton University)."""

SPLIT_SEED_OFFSETS = {"sentences": 1, "variants": 2, "utts": 3, "eval": 4}



# ----------------------------------------------------------------------------- text

normalize_text = normalize_transcript
"""Map English text to the LibriSpeech letter vocabulary (A-Z, apostrophe, space); see
`wavlm_live.metrics.normalize_transcript`, the same function the eval scores with."""


_ALLOWED_RAW = re.compile(r"^[A-Za-z ,;:!?'\-.]+$")
_ABBREVIATION_END = re.compile(r"(\b[A-Z][a-z]{0,2}|etc)\.$")


def sentence_is_usable(text: str, min_words: int = 4, max_words: int = 20) -> bool:
    """True when espeak-ng will read `text` as exactly its normalised letters.

    Rejects digits (read as number words), symbols, acronyms (all-caps words of two or
    more letters, which espeak-ng may spell out), abbreviations with inner periods and
    sentences outside [min_words, max_words] words.
    """
    if not _ALLOWED_RAW.match(text):
        return False
    words = text.replace("-", " ").split()
    if not min_words <= len(words) <= max_words:
        return False
    if "." in text.rstrip().rstrip(".!?") or _ABBREVIATION_END.search(text):
        return False  # inner periods mark abbreviations ("Mr. Smith", "U.S."), read as words
    for w in words:
        core = w.strip(",;:!?'.")
        if len(core) >= 2 and core.isupper():
            return False
    return True


def load_wordnet_sentences(folder: Path = SENTENCE_SOURCE) -> list[str]:
    """Example sentences quoted in the WordNet 3.0 glosses, usable ones only, sorted.

    Reads `data.{noun,verb,adj,adv}` in `folder`; an example is a double-quoted string in
    a gloss (after the ``|``). Returns the raw sentences (deduplicated on their normalised
    text), sorted by normalised text so the list does not depend on file order.
    Raises FileNotFoundError naming the folder when WordNet is not installed
    (``apt-get install wordnet-base``).
    """
    files = [folder / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(
            f"WordNet data files not found ({', '.join(missing)}); install the Debian package wordnet-base"
        )
    seen: dict[str, str] = {}
    for f in files:
        for line in f.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header lines start with two spaces
            gloss = line.split("|", 1)[1]
            for example in re.findall(r'"([^"]+)"', gloss):
                example = example.strip()
                if sentence_is_usable(example):
                    norm = normalize_text(example)
                    if norm and norm not in seen:
                        seen[norm] = example
    return [seen[k] for k in sorted(seen)]


def load_sentences(path: Path | None = None) -> list[str]:
    """Sentences from a text file (one per line, usable ones only) or from WordNet when None."""
    if path is None:
        return load_wordnet_sentences()
    lines = [l.strip() for l in Path(path).read_text(encoding="utf-8").splitlines()]
    out, seen = [], set()
    for l in lines:
        if l and sentence_is_usable(l) and normalize_text(l) not in seen:
            seen.add(normalize_text(l))
            out.append(l)
    if not out:
        raise ValueError(f"no usable sentences in {path}")
    return out


def split_list(items: list, seed: int, n_val: int, n_test: int) -> dict[str, list]:
    """Seeded shuffle of `items` into disjoint ``{"train", "val", "test"}`` lists."""
    if n_val + n_test >= len(items):
        raise ValueError(f"cannot hold out {n_val}+{n_test} of {len(items)} items")
    order = np.random.default_rng(seed).permutation(len(items))
    shuffled = [items[i] for i in order]
    return {
        "test": shuffled[:n_test],
        "val": shuffled[n_test:n_test + n_val],
        "train": shuffled[n_test + n_val:],
    }


# ----------------------------------------------------------------------------- voices

@dataclasses.dataclass(frozen=True, order=True)
class Speaker:
    """A synthetic speaker identity: espeak-ng base voice, variant ('' = none), pitch (0-99)."""

    voice: str
    variant: str
    pitch: int

    @property
    def espeak_voice(self) -> str:
        """The `-v` argument, e.g. ``en-US+Annie``."""
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    @property
    def name(self) -> str:
        """Stable identity string, e.g. ``en-US+Annie@p35``."""
        return f"{self.espeak_voice}@p{self.pitch}"

    @classmethod
    def parse(cls, name: str) -> "Speaker":
        """Inverse of `name`; raises ValueError on a malformed string."""
        m = re.fullmatch(r"([^+@]+)(?:\+([^@]+))?@p(\d+)", name)
        if not m:
            raise ValueError(f"not a speaker name: {name!r}")
        return cls(m.group(1), m.group(2) or "", int(m.group(3)))


def list_variants() -> list[str]:
    """espeak-ng voice variant file names (``espeak-ng --voices=variant``), sorted, minus EXCLUDED_VARIANTS."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        m = re.search(r"!v/(.+?)\s*(\(|$)", line)
        if m:
            names.add(m.group(1).strip())
    return sorted(n for n in names if n not in EXCLUDED_VARIANTS)


def speakers_for(variants: list[str]) -> list[Speaker]:
    """All identities (base voice x variant x pitch) for the given variants, sorted."""
    return sorted(Speaker(v, var, p) for v in BASE_VOICES for var in variants for p in PITCHES)


# ----------------------------------------------------------------------------- synthesis

def trim_silence(x: np.ndarray, threshold_db: float = -40.0, margin: int = 160) -> tuple[int, int]:
    """Speech span of `x` (float, [N] samples) as (start, end) sample indices.

    A 10 ms block (160 samples) is speech when its RMS is within `threshold_db` dB of the
    loudest block; the span runs from the first to the last such block, widened by
    `margin` samples each side and clipped to the signal. Returns (0, 0) for silence.
    """
    block = 160
    n = len(x) // block
    if n == 0:
        return 0, 0
    rms = np.sqrt(np.mean(x[: n * block].reshape(n, block).astype(np.float64) ** 2, axis=1))
    if rms.max() <= 0:
        return 0, 0
    active = np.nonzero(rms >= rms.max() * 10 ** (threshold_db / 20))[0]
    start = max(0, active[0] * block - margin)
    end = min(len(x), (active[-1] + 1) * block + margin)
    return int(start), int(end)


def synthesize(text: str, speaker: Speaker, speed: int, pitch: int | None = None) -> np.ndarray:
    """Speak `text` with espeak-ng; returns trimmed float32 audio [N] at 16 kHz in [-1, 1].

    `speed` is espeak-ng's `-s` (words per minute), `pitch` its `-p` (0-99; defaults to
    the speaker's). Leading and trailing silence is cut (`trim_silence`), so the whole
    returned signal is this speaker's active span. Raises RuntimeError when espeak-ng
    fails or produces silence.
    """
    pitch = speaker.pitch if pitch is None else pitch
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        proc = subprocess.run(
            ["espeak-ng", "-v", speaker.espeak_voice, "-s", str(int(speed)), "-p", str(int(pitch)),
             "-w", tmp.name, "--", text],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed for voice {speaker.espeak_voice}: {proc.stderr.strip()}")
        x, sr = sf.read(tmp.name, dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    x = soxr.resample(x, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    start, end = trim_silence(x)
    if end - start < FRAME_WINDOW:
        raise RuntimeError(f"espeak-ng produced silence for {text!r} with {speaker.name}")
    return x[start:end]


def _synth_job(job: dict) -> tuple[dict, np.ndarray]:
    speaker = Speaker.parse(job["speaker"])
    x = synthesize(job["text"], speaker, job["speed"], job["pitch"])
    return job, np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def synthesize_many(jobs: list[dict], workers: int = 2) -> list[tuple[dict, np.ndarray]]:
    """Run `synthesize` over job dicts (text, speaker, speed, pitch) in `workers` processes, in order."""
    if workers <= 1:
        return [_synth_job(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_synth_job, jobs, chunksize=32))


def utterance_jobs(sentences: list[str], speakers: list[Speaker], n: int, rng: np.random.Generator) -> list[dict]:
    """`n` utterance jobs: sentences cycled in a seeded order, speakers drawn so each is used evenly."""
    sent_order = rng.permutation(len(sentences))
    spk_order = np.concatenate([rng.permutation(len(speakers)) for _ in range(n // len(speakers) + 1)])
    jobs = []
    for i in range(n):
        spk = speakers[spk_order[i]]
        text = sentences[sent_order[i % len(sentences)]]
        jobs.append({
            "text": text,
            "norm": normalize_text(text),
            "speaker": spk.name,
            "speed": int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
            "pitch": int(np.clip(spk.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99)),
        })
    return jobs


# ----------------------------------------------------------------------------- corpus on disk

class UtteranceSet:
    """One split of a built corpus: utterance metadata plus a memory-mapped int16 audio array.

    `utts[i]` is a dict with keys text, norm, speaker, speed, pitch, offset, length
    (samples). `audio(i)` returns float32 [length] in [-1, 1].
    """

    def __init__(self, folder: Path):
        folder = Path(folder)
        if not (folder / "utts.jsonl").exists():
            raise FileNotFoundError(f"no utts.jsonl in {folder}; build the corpus first")
        self.folder = folder
        self.utts = [json.loads(l) for l in (folder / "utts.jsonl").read_text().splitlines() if l]
        self._audio = np.load(folder / "audio.npy", mmap_mode="r")
        self.speakers = sorted({u["speaker"] for u in self.utts})
        self.by_speaker: dict[str, list[int]] = {}
        for i, u in enumerate(self.utts):
            self.by_speaker.setdefault(u["speaker"], []).append(i)

    def __len__(self) -> int:
        return len(self.utts)

    def audio(self, i: int) -> np.ndarray:
        u = self.utts[i]
        return np.asarray(self._audio[u["offset"]:u["offset"] + u["length"]], dtype=np.float32) / 32768.0

    @property
    def seconds(self) -> float:
        return sum(u["length"] for u in self.utts) / SAMPLE_RATE


def write_utterance_set(folder: Path, results: list[tuple[dict, np.ndarray]]) -> None:
    """Write synthesised utterances as `folder`/audio.npy (int16 [total]) + utts.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    total = sum(len(a) for _, a in results)
    audio = np.lib.format.open_memmap(folder / "audio.npy", mode="w+", dtype=np.int16, shape=(total,))
    offset = 0
    with open(folder / "utts.jsonl", "w") as f:
        for job, a in results:
            audio[offset:offset + len(a)] = a
            f.write(json.dumps({**job, "offset": offset, "length": len(a)}) + "\n")
            offset += len(a)
    audio.flush()
    del audio


def build(out: Path, seed: int = 0, train_hours: float = 4.0, val_utts: int = 400, sentences_file: Path | None = None,
          n_val_sentences: int = 600, n_test_sentences: int = 1500, n_val_variants: int = 6,
          n_test_variants: int = 10, workers: int = 2, log=print) -> dict:
    """Build the training corpus in `out` (see the module docstring); returns meta.json's dict.

    The number of training utterances is chosen so their audio totals about `train_hours`
    (estimated from the mean length of the validation utterances). Splits: train
    (train sentences, train variants), val (val sentences, train-variant identities),
    val_unseen (val sentences, val-variant identities).
    """
    out = Path(out)
    t0 = time.time()
    sentences = load_sentences(sentences_file)
    s_split = split_list(sentences, seed + SPLIT_SEED_OFFSETS["sentences"], n_val_sentences, n_test_sentences)
    v_split = split_list(list_variants(), seed + SPLIT_SEED_OFFSETS["variants"], n_val_variants, n_test_variants)
    v_split["train"] = [""] + v_split["train"]  # the plain base voices are training identities too
    meta = {
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "sentence_source": str(sentences_file) if sentences_file else "WordNet 3.0 example sentences (Debian wordnet-base)",
        "base_voices": list(BASE_VOICES),
        "pitches": list(PITCHES),
        "speed_range": list(SPEED_RANGE),
        "sentences": s_split,
        "variants": v_split,
        "espeak_ng": subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSETS["utts"])
    train_spk = speakers_for(v_split["train"])
    val_spk = speakers_for(v_split["val"])
    plan = {
        "val": utterance_jobs(s_split["val"], train_spk, val_utts, rng),
        "val_unseen": utterance_jobs(s_split["val"], val_spk, val_utts, rng),
    }
    for name in ("val", "val_unseen"):
        res = synthesize_many(plan[name], workers)
        write_utterance_set(out / name, res)
        log(f"{name}: {len(res)} utterances, {sum(len(a) for _, a in res) / SAMPLE_RATE / 3600:.2f} h")
    mean_len = np.mean([u["length"] for u in UtteranceSet(out / "val").utts])
    n_train = max(1, int(round(train_hours * 3600 * SAMPLE_RATE / mean_len)))
    res = synthesize_many(utterance_jobs(s_split["train"], train_spk, n_train, rng), workers)
    write_utterance_set(out / "train", res)
    log(f"train: {len(res)} utterances, {sum(len(a) for _, a in res) / SAMPLE_RATE / 3600:.2f} h, "
        f"{len(train_spk)} identities; built in {time.time() - t0:.0f} s")
    return meta


def load_meta(corpus: Path) -> dict:
    path = Path(corpus) / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"no meta.json in {corpus}; run `corpus.py build {corpus}` first")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- conversations

@dataclasses.dataclass(frozen=True)
class Segment:
    """One speaker turn: [start, end) in seconds, speaker label, transcript (normalised)."""

    start: float
    end: float
    speaker: str
    text: str = ""


def mix_conversation(turns: list[tuple[int, np.ndarray, str]], rng: np.random.Generator, n_speakers: int,
                     p_overlap: float = 0.2, pause_range: tuple[float, float] = (0.15, 1.0),
                     overlap_range: tuple[float, float] = (0.2, 1.2), lead_range: tuple[float, float] = (0.1, 0.6),
                     speaker_gain_db: tuple[float, float] = (-6.0, 0.0)) -> tuple[np.ndarray, list[Segment]]:
    """Lay turns out on a timeline: pauses between them, some overlapping the previous turn.

    turns: (speaker index, float32 audio [n] whose whole span is speech, text) in speaking
    order. Each turn starts after the previous turn ended plus a pause drawn from
    `pause_range` (s); with probability `p_overlap`, when the speaker changes, it instead
    starts `overlap_range` seconds before the previous turn ends (never before that turn's
    first 0.3 s, never before the same speaker's own last turn ended plus 0.15 s). Each
    speaker gets a constant gain from `speaker_gain_db`. Returns the mix (float32 [N] at
    16 kHz, peak <= 0.95) and segments in seconds whose speaker labels are ``"spk{index}"``.
    Labels are exact: a segment covers exactly the samples its turn occupies.
    """
    if not turns:
        raise ValueError("a conversation needs at least one turn")
    gains = 10 ** (rng.uniform(*speaker_gain_db, size=n_speakers) / 20)
    lead = rng.uniform(*lead_range)
    placed = []  # (start sample, speaker, audio, text)
    spk_end = np.zeros(n_speakers)  # seconds
    prev_start = prev_end = 0.0
    prev_spk = -1
    for k, (spk, audio, text) in enumerate(turns):
        dur = len(audio) / SAMPLE_RATE
        if k == 0:
            start = lead
        elif spk != prev_spk and rng.random() < p_overlap:
            start = prev_end - rng.uniform(*overlap_range)
            start = max(start, prev_start + 0.3, spk_end[spk] + 0.15)
        else:
            start = max(prev_end, spk_end[spk]) + rng.uniform(*pause_range)
        s0 = int(round(start * SAMPLE_RATE))
        placed.append((s0, spk, audio, text))
        end = (s0 + len(audio)) / SAMPLE_RATE
        spk_end[spk] = end
        prev_start, prev_spk = s0 / SAMPLE_RATE, spk
        prev_end = max(prev_end, end)
    total = max(s0 + len(a) for s0, _, a, _ in placed) + int(rng.uniform(*lead_range) * SAMPLE_RATE)
    mix = np.zeros(total, np.float32)
    segments = []
    for s0, spk, audio, text in placed:
        mix[s0:s0 + len(audio)] += gains[spk] * audio
        segments.append(Segment(s0 / SAMPLE_RATE, (s0 + len(audio)) / SAMPLE_RATE, f"spk{spk}", text))
    peak = np.abs(mix).max()
    if peak > 0.95:
        mix *= 0.95 / peak
    return mix, sorted(segments, key=lambda s: (s.start, s.speaker))


def conversation_turns(rng: np.random.Generator, n_speakers: int, n_turns: int, p_switch: float = 0.85) -> list[int]:
    """Speaker index per turn: each turn changes speaker with probability `p_switch`; every speaker speaks."""
    if n_speakers < 1 or n_turns < n_speakers:
        raise ValueError(f"need n_turns >= n_speakers >= 1, got {n_turns} turns for {n_speakers} speakers")
    while True:
        seq = [int(rng.integers(n_speakers))]
        for _ in range(n_turns - 1):
            if n_speakers > 1 and rng.random() < p_switch:
                seq.append(int(rng.choice([s for s in range(n_speakers) if s != seq[-1]])))
            else:
                seq.append(seq[-1])
        if len(set(seq)) == n_speakers:
            return seq


def frame_labels(segments: list[Segment], speakers: list[str], n_frames: int, offset: float = 0.0) -> np.ndarray:
    """Per-frame speaker activity, float32 [n_frames, len(speakers)] of 0/1.

    Frame i covers samples [320 i, 320 i + 400) of a window starting `offset` seconds into
    the conversation; it is active for a speaker when its centre, (320 i + 200) / 16000 s
    + offset, lies in one of that speaker's segments [start, end).
    """
    centres = offset + (np.arange(n_frames) * FRAME_HOP + FRAME_WINDOW / 2) / SAMPLE_RATE
    y = np.zeros((n_frames, len(speakers)), np.float32)
    col = {s: j for j, s in enumerate(speakers)}
    for seg in segments:
        y[(centres >= seg.start) & (centres < seg.end), col[seg.speaker]] = 1.0
    return y


def write_rttm(path: Path, file_id: str, segments: list[Segment]) -> None:
    """Write segments as NIST RTTM SPEAKER lines (onset and duration in seconds, 3 decimals)."""
    _write_rttm(path, file_id, [(s.start, s.end, s.speaker) for s in segments])


# ----------------------------------------------------------------------------- eval folders

def _eval_sentences(corpus: Path) -> tuple[dict, list[str]]:
    meta = load_meta(corpus)
    return meta, meta["sentences"]["test"]


def _speaker_pool(meta: dict, voices: str) -> list[Speaker]:
    if voices == "seen":
        return speakers_for(meta["variants"]["train"])
    if voices == "unseen":
        return speakers_for(meta["variants"]["test"])
    raise ValueError(f"voices must be 'seen' or 'unseen', got {voices!r}")


def _write_wav(path: Path, x: np.ndarray) -> None:
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")


def _clip_from_utterances(rng: np.random.Generator, audios: list[np.ndarray], pause_range=(0.3, 0.8)) -> np.ndarray:
    parts = [np.zeros(int(rng.uniform(0.2, 0.5) * SAMPLE_RATE), np.float32)]
    for k, a in enumerate(audios):
        if k:
            parts.append(np.zeros(int(rng.uniform(*pause_range) * SAMPLE_RATE), np.float32))
        parts.append(a)
    parts.append(np.zeros(int(rng.uniform(0.2, 0.5) * SAMPLE_RATE), np.float32))
    return np.concatenate(parts)


def eval_captions(corpus: Path, out: Path, voices: str = "seen", clips: int = 20, sentences_per_clip: int = 5,
                  seed: int = 0) -> list[str]:
    """Write `clips` NAME.wav + NAME.txt pairs: each one identity reading several test sentences.

    `voices` "seen" draws identities from the training variants, "unseen" from the
    held-out test variants. Sentences are used at most once across clips. Returns names.
    """
    meta, sents = _eval_sentences(corpus)
    pool = _speaker_pool(meta, voices)
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSETS["eval"] + (0 if voices == "seen" else 100))
    if clips * sentences_per_clip > len(sents):
        raise ValueError(f"{clips} clips x {sentences_per_clip} sentences exceeds the {len(sents)} test sentences")
    order = rng.permutation(len(sents))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for c in range(clips):
        spk = pool[int(rng.integers(len(pool)))]
        texts = [sents[i] for i in order[c * sentences_per_clip:(c + 1) * sentences_per_clip]]
        audios = [synthesize(t, spk, int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1))) for t in texts]
        name = f"{voices}_{c:03d}"
        _write_wav(out / f"{name}.wav", _clip_from_utterances(rng, audios))
        (out / f"{name}.txt").write_text(" ".join(normalize_text(t) for t in texts) + "\n")
        names.append(name)
    return names


def make_eval_conversation(sentences: list[str], speakers: list[Speaker], rng: np.random.Generator,
                           duration: float = 60.0, p_overlap: float = 0.2) -> tuple[np.ndarray, list[Segment]]:
    """Synthesise a conversation of about `duration` seconds by `speakers` reading `sentences` in order.

    Sentences are consumed from the front of the list (the caller passes each sentence
    once). Returns the mix and its segments, speaker labels ``spk0..`` in `speakers` order.
    """
    n = len(speakers)
    turns, est = [], 0.0
    seq = conversation_turns(rng, n, max(n, 64))
    speeds = {s: int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)) for s in range(n)}
    i = 0
    while est < duration and i < len(seq):
        if not sentences:
            raise ValueError("ran out of sentences for the conversation")
        spk = seq[i]
        text = sentences.pop(0)
        audio = synthesize(text, speakers[spk], speeds[spk])
        turns.append((spk, audio, normalize_text(text)))
        est += len(audio) / SAMPLE_RATE + 0.4
        i += 1
    if len({t[0] for t in turns}) < n:
        raise ValueError("duration too short for every speaker to take a turn")
    return mix_conversation(turns, rng, n, p_overlap=p_overlap)


def distinct_speakers(pool: list[Speaker], n: int, rng: np.random.Generator) -> list[Speaker]:
    """`n` identities from `pool` with pairwise different variants and base voices."""
    for _ in range(1000):
        picks = [pool[int(i)] for i in rng.choice(len(pool), size=n, replace=False)]
        if len({p.variant for p in picks}) == n and len({p.voice for p in picks}) == n:
            return picks
    raise ValueError(f"cannot find {n} speakers with distinct variants and voices in a pool of {len(pool)}")


def eval_diarization(corpus: Path, out: Path, clips: int = 10, duration: float = 60.0, seed: int = 0,
                     n_speakers: int = 2, p_overlap: float = 0.2) -> list[str]:
    """Write `clips` conversations NAME.wav + NAME.rttm + NAME.txt by held-out test-variant identities.

    The speakers of one conversation have different variants and base voices. Sentences
    come from the test split (never heard in training), each used once across these
    conversations. Returns the names.
    """
    meta, sents = _eval_sentences(corpus)
    pool = _speaker_pool(meta, "unseen")
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSETS["eval"] + 200)
    sents = [sents[i] for i in rng.permutation(len(sents))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for c in range(clips):
        spks = distinct_speakers(pool, n_speakers, rng)
        mix, segs = make_eval_conversation(sents, spks, rng, duration, p_overlap)
        name = f"conv_{c:03d}"
        _write_wav(out / f"{name}.wav", mix)
        write_rttm(out / f"{name}.rttm", name, segs)
        (out / f"{name}.txt").write_text(" ".join(s.text for s in segs) + "\n")
        names.append(name)
    return names


def eval_verification(corpus: Path, out: Path, speakers: int = 40, clips_per_speaker: int = 4,
                      sentences_per_clip: int = 2, trials: int = 2000, seed: int = 0) -> int:
    """Write clips NAME.wav by `speakers` held-out identities and trials.txt; returns the trial count.

    Each clip is one identity reading `sentences_per_clip` test sentences. trials.txt has
    lines ``LABEL A.wav B.wav`` (1 = same identity, 0 = different), half of each kind
    (at most every same-speaker pair), pairs drawn without repeats.
    """
    meta, sents = _eval_sentences(corpus)
    pool = _speaker_pool(meta, "unseen")
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSETS["eval"] + 300)
    if speakers > len(pool):
        raise ValueError(f"asked for {speakers} speakers, only {len(pool)} held-out identities exist")
    chosen = [pool[int(i)] for i in rng.choice(len(pool), size=speakers, replace=False)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, int]] = []
    for k, spk in enumerate(chosen):
        for c in range(clips_per_speaker):
            texts = [sents[int(i)] for i in rng.choice(len(sents), size=sentences_per_clip, replace=False)]
            audios = [synthesize(t, spk, int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
                                 int(np.clip(spk.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99)))
                      for t in texts]
            name = f"spk{k:03d}_{c}.wav"
            _write_wav(out / name, _clip_from_utterances(rng, audios, (0.2, 0.5)))
            files.append((name, k))
    (out / "speakers.txt").write_text("".join(f"{n} {chosen[k].name}\n" for n, k in files))
    same = [(a, b) for i, (a, ka) in enumerate(files) for (b, kb) in files[i + 1:] if ka == kb]
    diff_all = [(a, b) for i, (a, ka) in enumerate(files) for (b, kb) in files[i + 1:] if ka != kb]
    n_same = min(len(same), trials // 2)
    n_diff = min(len(diff_all), trials - n_same)
    pick_same = [same[int(i)] for i in rng.choice(len(same), size=n_same, replace=False)]
    pick_diff = [diff_all[int(i)] for i in rng.choice(len(diff_all), size=n_diff, replace=False)]
    lines = [f"1 {a} {b}" for a, b in pick_same] + [f"0 {a} {b}" for a, b in pick_diff]
    lines = [lines[int(i)] for i in rng.permutation(len(lines))]
    (out / "trials.txt").write_text("\n".join(lines) + "\n")
    return len(lines)


def demo_conversation(corpus: Path, out: Path, duration: float = 45.0, n_speakers: int = 2, seed: int = 7,
                      p_overlap: float = 0.15) -> list[Segment]:
    """Write the bundled demo conversation: `out` (.flac or .wav) + same stem .txt and .rttm.

    Speakers are held-out test-variant identities with different variants and voices;
    sentences are test sentences (never heard in training). Also writes STEM.json:
    {"speakers": {label: identity}, "turns": [{start, end, speaker, text}, ...]} (seconds,
    start order). Returns its segments.
    """
    meta, sents = _eval_sentences(corpus)
    pool = _speaker_pool(meta, "unseen")
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSETS["eval"] + 400)
    sents = [sents[i] for i in rng.permutation(len(sents))]
    spks = distinct_speakers(pool, n_speakers, rng)
    mix, segs = make_eval_conversation(sents, spks, rng, duration, p_overlap)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, mix, SAMPLE_RATE, subtype="PCM_16")
    write_rttm(out.with_suffix(".rttm"), out.stem, segs)
    out.with_suffix(".txt").write_text(" ".join(s.text for s in segs) + "\n")
    out.with_suffix(".json").write_text(json.dumps({
        "speakers": {f"spk{k}": s.name for k, s in enumerate(spks)},
        "turns": [dataclasses.asdict(s) for s in segs],
    }, indent=1) + "\n")
    return segs


# ----------------------------------------------------------------------------- spoken-language identification

LID_VOICES = {
    "en": ("en-gb", "en-us", "en-gb-scotland"),
    "de": ("de",),
    "fr": ("fr-fr", "fr-be", "fr-ch"),
    "es": ("es", "es-419"),
    "it": ("it",),
    "pt": ("pt", "pt-br"),
    "nl": ("nl",),
    "pl": ("pl",),
    "sv": ("sv",),
}
"""espeak-ng base voices per language of the language-identification corpus (class names
are these ISO 639-1 codes). Each voice is crossed with the `+variant` voice variants and
PITCHES, as the English identities are."""

GETTEXT_DOMAINS = (
    "coreutils", "libc", "bash", "tar", "grep", "sed", "findutils", "diffutils", "dpkg", "apt", "libapt-pkg6.0",
    "shadow", "procps-ng", "xz", "Linux-PAM", "gettext-runtime", "adduser", "man-db", "wget", "make", "systemd",
)
"""Message catalogs the language-identification sentences come from: the translations of
Debian's base system messages (packages coreutils, libc-l10n, bash, tar, grep, sed,
findutils, diffutils, dpkg, apt, libapt-pkg6.0, login, procps, xz-utils, libpam-runtime,
gettext-base, adduser, man-db, wget, make, systemd; GPL / LGPL translations by the
Translation Project and Debian's translators). The English sentence is the msgid."""

LOCALE_DIR = Path("/usr/share/locale")
"""Where Debian installs the compiled catalogs: LOCALE_DIR/LANG/LC_MESSAGES/DOMAIN.mo."""

LID_MIN_LETTERS = 12
"""A sentence needs this many letters (shorter messages are mostly one or two words)."""

_LID_ALLOWED = re.compile(r"^[^\W\d_](?:[^\W\d_]|[ '’,;:.!?\-])*$")


def fold_sentence(text: str) -> str:
    """Lower case, punctuation dropped, spaces collapsed: the form two sentences must not share."""
    return " ".join(re.sub(r"[^\w'’ ]", " ", text.lower()).split())


def lid_sentence_is_usable(text: str, min_words: int = 3, max_words: int = 25) -> bool:
    """True when `text` is a plain sentence espeak-ng reads as words of its language.

    Letters of any script, spaces and ``' ’ , ; : . ! ? -`` only (no digits, which are
    read as number words, no format directives such as ``%s``, no paths, options or
    markup), starting with a letter; `min_words` to `max_words` words and at least
    LID_MIN_LETTERS letters; no inner periods (abbreviations) and no all-caps words of two
    or more letters (acronyms, which espeak-ng may spell out); no runs of spaces.
    """
    text = text.strip()
    if not _LID_ALLOWED.match(text) or "  " in text:
        return False  # runs of spaces: columns of option help, not sentences
    words = text.replace("-", " ").split()
    if not min_words <= len(words) <= max_words or sum(c.isalpha() for c in text) < LID_MIN_LETTERS:
        return False
    if "." in text.rstrip(".!?:"):
        return False
    return not any(len(core) >= 2 and core.isupper() for core in (w.strip(",;:.!?'’") for w in words))


def load_gettext_sentences(languages: tuple[str, ...] | list[str], domains: tuple[str, ...] = GETTEXT_DOMAINS,
                           locale_dir: Path = LOCALE_DIR) -> dict[str, dict[str, str]]:
    """Translated messages as sentences: ``{key: {lang: sentence}}``, sorted by key.

    Reads LOCALE_DIR/LANG/LC_MESSAGES/DOMAIN.mo with the standard library's `gettext`
    (GNU .mo format); the ``en`` sentence is the msgid itself. Keys are the folded
    msgids (`fold_sentence`), so a message that several catalogs (or spellings) share is
    one key; the first translation of a key per language is kept (in `domains` order),
    and a translation already taken under another key is not taken again, so that no
    sentence can be in two splits. A message enters a language
    when both its msgid and its translation pass `lid_sentence_is_usable` and the
    translation differs from the msgid (untranslated strings are left out); plural forms
    and empty translations are skipped, a ``msgctxt`` is dropped from the key. Keys
    without any usable sentence are left out. Raises FileNotFoundError naming the folder
    when no catalog of any language other than English exists.
    """
    import gettext  # noqa: PLC0415

    found: dict[str, dict[str, str]] = {}
    seen: dict[str, set[str]] = {}  # per language, the sentences already taken (folded)
    catalogs = 0
    for domain in domains:
        for lang in languages:
            if lang == "en":
                continue
            path = Path(locale_dir) / lang / "LC_MESSAGES" / f"{domain}.mo"
            if not path.is_file():
                continue
            catalogs += 1
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
            for msgid, msgstr in catalog.items():
                if not isinstance(msgid, str) or not msgid or not isinstance(msgstr, str):
                    continue  # plural forms are keyed (msgid, n); the header has an empty msgid
                msgid = msgid.split("\x04", 1)[-1].strip()
                msgstr = msgstr.strip()
                if msgstr == msgid or not (lid_sentence_is_usable(msgid) and lid_sentence_is_usable(msgstr)):
                    continue
                key = fold_sentence(msgid)
                entry = found.setdefault(key, {})
                if lang in entry or fold_sentence(msgstr) in seen.setdefault(lang, set()):
                    continue  # one sentence per key and language; a sentence under one key only
                entry[lang] = msgstr
                seen[lang].add(fold_sentence(msgstr))
                if "en" in languages and "en" not in entry:
                    entry["en"] = msgid
    if not catalogs:
        raise FileNotFoundError(f"no message catalogs of {', '.join(l for l in languages if l != 'en')} in "
                                f"{locale_dir}; install Debian's base packages with their translations "
                                f"(e.g. coreutils, libc-l10n)")
    return {k: found[k] for k in sorted(found) if any(lang != "en" for lang in found[k])}


def load_lid_sentences(path: Path | None, languages: tuple[str, ...] | list[str]) -> dict[str, dict[str, str]]:
    """Sentences per key and language from a UTF-8 TSV file (``KEY<TAB>LANG<TAB>SENTENCE``
    per line; lines of one KEY are translations of each other and share a split), or from
    the gettext catalogs (`load_gettext_sentences`) when `path` is None. Only `languages`
    and usable sentences are kept. Raises ValueError when a line is malformed or a
    language has no sentence."""
    if path is None:
        texts = load_gettext_sentences(languages)
    else:
        texts = {}
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected KEY<TAB>LANG<TAB>SENTENCE")
            key, lang, text = (p.strip() for p in parts)
            if lang in languages and lid_sentence_is_usable(text):
                texts.setdefault(key, {})[lang] = text
        texts = {k: texts[k] for k in sorted(texts)}
    empty = [l for l in languages if not any(l in v for v in texts.values())]
    if empty:
        raise ValueError(f"no usable sentences for {', '.join(empty)}")
    return texts


def lid_speakers(languages: list[str], variants: list[str]) -> dict[str, list[Speaker]]:
    """Identities per language: its LID_VOICES x `variants` x PITCHES, sorted."""
    unknown = [l for l in languages if l not in LID_VOICES]
    if unknown:
        raise ValueError(f"no espeak-ng voices listed for {', '.join(unknown)} (LID_VOICES has {', '.join(LID_VOICES)})")
    return {l: sorted(Speaker(v, var, p) for v in LID_VOICES[l] for var in variants for p in PITCHES)
            for l in languages}


def lid_jobs(texts: dict[str, dict[str, str]], keys: list[str], speakers: dict[str, list[Speaker]], n: int,
             rng: np.random.Generator) -> list[dict]:
    """`n` utterance jobs balanced over the languages: language ``i % L`` for job i (then
    shuffled), each language cycling through its sentences among `keys` in a seeded order
    and through its identities evenly; speed from SPEED_RANGE, pitch jittered.
    Job keys: text, lang, key, speaker, speed, pitch."""
    languages = list(speakers)
    pools = {l: [k for k in keys if l in texts[k]] for l in languages}
    empty = [l for l, ks in pools.items() if not ks]
    if empty:
        raise ValueError(f"no sentences of {', '.join(empty)} in this split")
    orders = {l: [pools[l][i] for i in rng.permutation(len(pools[l]))] for l in languages}
    spk_orders = {l: np.concatenate([rng.permutation(len(speakers[l])) for _ in range(n // len(speakers[l]) + 1)])
                  for l in languages}
    used = {l: 0 for l in languages}
    jobs = []
    for i in rng.permutation(n):
        lang = languages[int(i) % len(languages)]
        k = used[lang]
        used[lang] += 1
        key = orders[lang][k % len(orders[lang])]
        spk = speakers[lang][int(spk_orders[lang][k])]
        jobs.append({
            "text": texts[key][lang], "lang": lang, "key": key, "speaker": spk.name,
            "speed": int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
            "pitch": int(np.clip(spk.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99)),
        })
    return jobs


def build_lid(out: Path, seed: int = 0, train_hours: float = 2.0, val_utts: int = 360,
              languages: tuple[str, ...] | list[str] = tuple(LID_VOICES), sentences_file: Path | None = None,
              n_val_sentences: int = 200, n_test_sentences: int = 300, n_val_variants: int = 6,
              n_test_variants: int = 10, workers: int = 2, log=print) -> dict:
    """Build the spoken-language-identification corpus in `out`; returns meta.json's dict.

    Sentence keys (a message and all its translations) are split train / val / test, so
    no translation of a held-out sentence is heard in training, in any language. Voice
    variants are split exactly as `build` splits them (same seed offsets and counts by
    default), so the val and test variants are also never heard by the other demo
    models. Splits written: train (train sentences, train identities), val (val
    sentences, train identities), val_unseen (val sentences, val-variant identities),
    each balanced over the languages; utts.jsonl rows add ``lang`` and ``key``.
    meta.json has ``languages``, ``texts`` ({key: {lang: sentence}}), the splits and the
    voices.
    """
    out = Path(out)
    t0 = time.time()
    languages = list(languages)
    texts = load_lid_sentences(sentences_file, languages)
    s_split = split_list(list(texts), seed + SPLIT_SEED_OFFSETS["sentences"], n_val_sentences, n_test_sentences)
    v_split = split_list(list_variants(), seed + SPLIT_SEED_OFFSETS["variants"], n_val_variants, n_test_variants)
    v_split["train"] = [""] + v_split["train"]
    meta = {
        "task": "language identification",
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "languages": languages,
        "voices": {l: list(LID_VOICES[l]) for l in languages},
        "sentence_source": str(sentences_file) if sentences_file else
        f"gettext message catalogs in {LOCALE_DIR} ({', '.join(GETTEXT_DOMAINS)}); English = msgid",
        "sentences_per_language": {l: sum(l in v for v in texts.values()) for l in languages},
        "pitches": list(PITCHES),
        "speed_range": list(SPEED_RANGE),
        "sentences": s_split,
        "variants": v_split,
        "texts": texts,
        "espeak_ng": subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSETS["utts"])
    train_spk = lid_speakers(languages, v_split["train"])
    val_spk = lid_speakers(languages, v_split["val"])
    plan = {"val": lid_jobs(texts, s_split["val"], train_spk, val_utts, rng),
            "val_unseen": lid_jobs(texts, s_split["val"], val_spk, val_utts, rng)}
    for name in ("val", "val_unseen"):
        res = synthesize_many(plan[name], workers)
        write_utterance_set(out / name, res)
        log(f"{name}: {len(res)} utterances, {sum(len(a) for _, a in res) / SAMPLE_RATE / 3600:.2f} h")
    mean_len = np.mean([u["length"] for u in UtteranceSet(out / "val").utts])
    n_train = max(len(languages), int(round(train_hours * 3600 * SAMPLE_RATE / mean_len)))
    res = synthesize_many(lid_jobs(texts, s_split["train"], train_spk, n_train, rng), workers)
    write_utterance_set(out / "train", res)
    log(f"train: {len(res)} utterances, {sum(len(a) for _, a in res) / SAMPLE_RATE / 3600:.2f} h, "
        f"{sum(len(v) for v in train_spk.values())} identities, {len(languages)} languages; "
        f"built in {time.time() - t0:.0f} s")
    return meta


def eval_lid(corpus: Path, out: Path, voices: str = "unseen", clips_per_language: int = 10,
             sentences_per_clip: int = 2, seed: int = 0) -> list[str]:
    """Write NAME.wav + NAME.label clips: one identity reading `sentences_per_clip` test
    sentences of one language (0.3-0.8 s pauses, 0.2-0.5 s of silence at each end);
    NAME.label holds the language code. `voices` "unseen" takes held-out test-variant
    identities, "seen" training identities; a test sentence is used at most once per
    language. Also writes clips.tsv (NAME, language, identity, the sentences joined by
    " | "), for reading only. Returns the names (``LANG_NNN``).
    """
    meta = load_meta(corpus)
    if "languages" not in meta:
        raise ValueError(f"{corpus} is not a language-identification corpus (no languages in meta.json)")
    languages, texts = meta["languages"], meta["texts"]
    variants = meta["variants"]["test" if voices == "unseen" else "train"] if voices in ("seen", "unseen") else None
    if variants is None:
        raise ValueError(f"voices must be 'seen' or 'unseen', got {voices!r}")
    pool = lid_speakers(languages, variants)
    rng = np.random.default_rng(seed + SPLIT_SEED_OFFSETS["eval"] + (500 if voices == "unseen" else 600))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names, rows = [], []
    for lang in languages:
        keys = [k for k in meta["sentences"]["test"] if lang in texts[k]]
        need = clips_per_language * sentences_per_clip
        if need > len(keys):
            raise ValueError(f"{clips_per_language} clips x {sentences_per_clip} sentences exceeds the {len(keys)} "
                             f"test sentences of {lang}")
        order = [keys[int(i)] for i in rng.permutation(len(keys))]
        for c in range(clips_per_language):
            spk = pool[lang][int(rng.integers(len(pool[lang])))]
            chosen = [texts[k][lang] for k in order[c * sentences_per_clip:(c + 1) * sentences_per_clip]]
            audios = [synthesize(t, spk, int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
                                 int(np.clip(spk.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99)))
                      for t in chosen]
            name = f"{lang}_{c:03d}"
            _write_wav(out / f"{name}.wav", _clip_from_utterances(rng, audios))
            (out / f"{name}.label").write_text(lang + "\n", encoding="utf-8")
            names.append(name)
            rows.append(f"{name}\t{lang}\t{spk.name}\t{' | '.join(chosen)}\n")
    (out / "clips.tsv").write_text("".join(rows), encoding="utf-8")
    return names


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the training corpus")
    b.add_argument("out", type=Path)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--train-hours", type=float, default=4.0)
    b.add_argument("--val-utts", type=int, default=400)
    b.add_argument("--sentences", type=Path, default=None, help="text file, one sentence a line (default: WordNet)")
    b.add_argument("--val-sentences", type=int, default=600)
    b.add_argument("--test-sentences", type=int, default=1500)
    b.add_argument("--val-variants", type=int, default=6)
    b.add_argument("--test-variants", type=int, default=10)
    b.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    for name, hlp in (("eval-captions", "caption eval clips"), ("eval-diarization", "two-speaker conversations"),
                      ("eval-verification", "verification clips + trials.txt")):
        e = sub.add_parser(name, help=hlp)
        e.add_argument("corpus", type=Path)
        e.add_argument("out", type=Path)
        e.add_argument("--seed", type=int, default=0)
        if name == "eval-captions":
            e.add_argument("--voices", choices=("seen", "unseen"), default="seen")
            e.add_argument("--clips", type=int, default=20)
            e.add_argument("--sentences-per-clip", type=int, default=5)
        elif name == "eval-diarization":
            e.add_argument("--clips", type=int, default=10)
            e.add_argument("--duration", type=float, default=60.0)
            e.add_argument("--speakers", type=int, default=2)
        else:
            e.add_argument("--speakers", type=int, default=40)
            e.add_argument("--clips-per-speaker", type=int, default=4)
            e.add_argument("--trials", type=int, default=2000)
    lb = sub.add_parser("build-lid", help="build the spoken-language-identification corpus")
    lb.add_argument("out", type=Path)
    lb.add_argument("--seed", type=int, default=0)
    lb.add_argument("--train-hours", type=float, default=2.0)
    lb.add_argument("--val-utts", type=int, default=360, help="per validation split, balanced over the languages")
    lb.add_argument("--languages", default=",".join(LID_VOICES),
                    help="comma-separated codes of LID_VOICES (default: %(default)s)")
    lb.add_argument("--sentences", type=Path, default=None,
                    help="TSV file KEY<TAB>LANG<TAB>SENTENCE (default: the gettext message catalogs)")
    lb.add_argument("--val-sentences", type=int, default=200)
    lb.add_argument("--test-sentences", type=int, default=300)
    lb.add_argument("--val-variants", type=int, default=6)
    lb.add_argument("--test-variants", type=int, default=10)
    lb.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    le = sub.add_parser("eval-lid", help="language-identification clips (NAME.wav + NAME.label)")
    le.add_argument("corpus", type=Path)
    le.add_argument("out", type=Path)
    le.add_argument("--voices", choices=("seen", "unseen"), default="unseen")
    le.add_argument("--clips-per-language", type=int, default=10)
    le.add_argument("--sentences-per-clip", type=int, default=2)
    le.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("conversation", help="the bundled demo conversation")
    c.add_argument("corpus", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--duration", type=float, default=45.0)
    c.add_argument("--speakers", type=int, default=2)
    c.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    if a.cmd == "build":
        build(a.out, a.seed, a.train_hours, a.val_utts, a.sentences, a.val_sentences, a.test_sentences,
              a.val_variants, a.test_variants, a.workers)
    elif a.cmd == "build-lid":
        build_lid(a.out, a.seed, a.train_hours, a.val_utts, [l.strip() for l in a.languages.split(",") if l.strip()],
                  a.sentences, a.val_sentences, a.test_sentences, a.val_variants, a.test_variants, a.workers)
    elif a.cmd == "eval-lid":
        print(len(eval_lid(a.corpus, a.out, a.voices, a.clips_per_language, a.sentences_per_clip, a.seed)), "clips")
    elif a.cmd == "eval-captions":
        print(len(eval_captions(a.corpus, a.out, a.voices, a.clips, a.sentences_per_clip, a.seed)), "clips")
    elif a.cmd == "eval-diarization":
        print(len(eval_diarization(a.corpus, a.out, a.clips, a.duration, a.seed, a.speakers)), "conversations")
    elif a.cmd == "eval-verification":
        print(eval_verification(a.corpus, a.out, a.speakers, a.clips_per_speaker, trials=a.trials, seed=a.seed), "trials")
    else:
        segs = demo_conversation(a.corpus, a.out, a.duration, a.speakers, a.seed)
        print(f"{a.out}: {max(s.end for s in segs):.1f} s, {len(segs)} turns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
