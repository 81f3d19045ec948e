"""``wavlm-live eval``: CER/WER, DER, EER and classification accuracy measured through the streaming engine.

Folder layout (written by ``scripts/corpus.py eval-*``; see docs/demo-models.md): one clip
per ``NAME.wav`` / ``NAME.flac`` / ``NAME.mp3`` / ``NAME.m4a`` / ... (any name ending in
:data:`wavlm_live.audio.file.MEDIA_SUFFIXES`); its transcript in ``NAME.txt`` (one line);
its diarization reference in ``NAME.rttm`` (NIST RTTM); and optionally ``trials.txt`` with
VoxCeleb-style lines ``LABEL ENROL TEST`` (1 same speaker, 0 different; paths relative to
the folder); its class in ``NAME.label`` (one line, a class name of the classification
model's ``id2label``, e.g. ``fr``), scored as accuracy (:func:`clip_prediction`). Every clip runs through :class:`wavlm_live.engine.Engine` window by window,
exactly as live audio does (``Engine.run_offline``: same windows, stitchers and events,
only never skipping), with a fresh engine per clip.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wavlm_live.audio.file import MEDIA_SUFFIXES
from .errors import CliError, UsageError
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine
from wavlm_live.events import CaptionEvent, ClassificationEvent, DiarizationEvent, Event, SpeakerEvent


@dataclass
class ClipResult:
    """What the engine produced for one clip."""

    transcript: str = ""
    turns: list[tuple[float, float, str]] = field(default_factory=list)
    speakers: dict[str, SpeakerEvent] = field(default_factory=dict)
    classifications: list[ClassificationEvent] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        if isinstance(event, CaptionEvent) and event.final and event.text:
            self.transcript = f"{self.transcript} {event.text}".strip()
        elif isinstance(event, ClassificationEvent):
            self.classifications.append(event)
        elif isinstance(event, DiarizationEvent):
            self.turns += [(t.start, t.end, t.speaker) for t in event.turns]
        elif isinstance(event, SpeakerEvent):
            self.speakers[event.id] = event

    def embedding(self) -> np.ndarray | None:
        """The clip's x-vector: the mean of its speakers' L2-normalised centroids
        weighted by their update counts, or ``None`` without any."""
        rows = [(np.asarray(s.embedding, np.float64), s.updates) for s in self.speakers.values() if s.embedding and s.updates]
        if not rows:
            return None
        total = sum(n for _, n in rows)
        return sum(v * n for v, n in rows) / total


def clip_prediction(events: list[ClassificationEvent]) -> str | None:
    """A clip's class: the duration-weighted majority of its events' top labels.

    Each ``classification`` event (one per window, or one per speaker turn) votes for its
    best class with its duration ``end - start`` in seconds; the class with the most
    seconds wins, a tie going to the larger summed probability of the tied classes'
    votes, then to the class first voted for. Events without labels or of zero duration
    do not vote. Returns ``None`` when nothing voted.
    """
    seconds: dict[str, float] = {}
    scores: dict[str, float] = {}
    for event in events:
        duration = event.end - event.start
        if not event.labels or duration <= 0:
            continue
        top = event.labels[0]
        seconds[top.label] = seconds.get(top.label, 0.0) + duration
        scores[top.label] = scores.get(top.label, 0.0) + top.score
    if not seconds:
        return None
    order = list(seconds)
    return max(order, key=lambda label: (round(seconds[label], 9), scores[label], -order.index(label)))


def read_label(path: Path) -> str:
    """The class name in a ``NAME.label`` file: its one non-empty line, stripped.

    Raises:
        CliError: the file is empty or has more than one non-empty line.
    """
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != 1:
        raise CliError(f"{path} must hold exactly one line, the class name (it has {len(lines)})")
    return lines[0]


def find_clips(folder: Path) -> dict[str, Path]:
    """Clip name -> audio path for every audio file directly in ``folder``."""
    clips = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in MEDIA_SUFFIXES and path.is_file():
            clips.setdefault(path.stem, path)
    return clips


def run_clip(models: Any, config: Any, path: Path, tasks: set[str]) -> ClipResult:
    """Run one clip through a fresh engine with the given subset of the loaded models.

    Raises:
        UsageError: the engine refuses the settings (``--classify turns`` without diarization).
    """
    from .app import read_audio  # noqa: PLC0415

    bus = EventBus()
    result = ClipResult()
    bus.subscribe(result)
    try:
        engine = Engine(
            config,
            bus,
            captions=models.captions if "captions" in tasks else None,
            diarization=models.diarization if "diarization" in tasks else None,
            embeddings=models.embeddings if "embeddings" in tasks else None,
            classification=models.classification if "classification" in tasks else None,
        )
    except ValueError as exc:  # settings the tasks cannot run with (--classify turns without diarization)
        raise UsageError(str(exc)) from None
    audio = read_audio(path)
    engine.run_offline(audio[i : i + 1600] for i in range(0, audio.size, 1600))
    return result


def evaluate_folder(args: argparse.Namespace) -> int:
    """Run the eval and print the metrics (a table, or JSON with ``--json``).

    Raises:
        CliError: a missing folder, no clips with references, a task the references need
            that is disabled, or malformed reference files.
    """
    import wavlm_live.metrics as metrics  # noqa: PLC0415
    from .app import check_analysis_options, engine_config, load_models  # noqa: PLC0415
    from wavlm_live.progress import Progress  # noqa: PLC0415

    check_analysis_options(args)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise CliError(f"evaluation folder {folder} does not exist")
    clips = find_clips(folder)
    trials_path = folder / "trials.txt"
    try:
        trials = metrics.read_trials(trials_path) if trials_path.is_file() else []
    except ValueError as exc:
        raise CliError(str(exc)) from None
    with_text = [n for n in clips if (folder / f"{n}.txt").is_file()]
    with_rttm = [n for n in clips if (folder / f"{n}.rttm").is_file()]
    labels = {n: read_label(folder / f"{n}.label") for n in clips if (folder / f"{n}.label").is_file()}
    if not (with_text or with_rttm or trials or labels):
        raise CliError(f"{folder} has no clips with references (NAME.txt, NAME.rttm, NAME.label) and no trials.txt")
    models = load_models(args, args.demo)
    config = engine_config(args, models.demo, realtime=False)
    enabled = {t for t in ("captions", "diarization", "embeddings", "classification") if getattr(models, t) is not None}
    needed = (({"captions"} if with_text else set()) | ({"diarization"} if with_rttm else set())
              | ({"embeddings"} if trials else set()) | ({"classification"} if labels else set()))
    missing = needed - enabled
    if missing == needed:
        raise UsageError(f"the references need the {', '.join(sorted(missing))} task(s), which are disabled")
    kinds = {"captions": "transcripts (NAME.txt)", "diarization": "RTTM references", "embeddings": "trials.txt",
             "classification": "class labels (NAME.label)"}
    for task in sorted(missing):
        print(f"eval: not scoring the {kinds[task]}: the {task} task is disabled", file=sys.stderr)
    if "captions" in missing:
        with_text = []
    if "diarization" in missing:
        with_rttm = []
    if "embeddings" in missing:
        trials = []
    if "classification" in missing:
        labels = {}
    if labels:
        known = set(models.classification.labels)
        unknown = sorted({label for label in labels.values() if label not in known})
        if unknown:
            raise CliError(f"NAME.label classes {', '.join(unknown)} are not classes of the classification model "
                           f"({', '.join(models.classification.labels)})")

    t0 = time.perf_counter()
    refs_text, hyps_text = [], []
    der_total = None
    predictions: dict[str, str | None] = {}
    modes: set[str] = set()
    scored = sorted(set(with_text) | set(with_rttm) | set(labels))
    trial_files = sorted({rel for _, enrol, test in trials for rel in (enrol, test)})
    meter = Progress("eval", len(scored) + len(trial_files), "clips", interval=getattr(args, "progress_interval", 10.0))
    for i, name in enumerate(scored, 1):
        tasks = {"captions"} if name in with_text else set()
        if name in with_rttm:
            tasks |= enabled & {"diarization", "embeddings"}
        if name in labels:  # with diarization on, classify the speaker turns (auto mode)
            tasks |= {"classification"} | (enabled & {"diarization"})
        result = run_clip(models, config, clips[name], tasks)
        if name in labels:
            predictions[name] = clip_prediction(result.classifications)
            modes |= {event.scope for event in result.classifications}
        if name in with_text:
            refs_text.append(metrics.normalize_transcript((folder / f"{name}.txt").read_text(encoding="utf-8")))
            hyps_text.append(metrics.normalize_transcript(result.transcript))
        if name in with_rttm:
            try:
                reference = [t for turns in metrics.read_rttm(folder / f"{name}.rttm").values() for t in turns]
            except ValueError as exc:
                raise CliError(str(exc)) from None
            errors = metrics.diarization_errors(reference, result.turns, collar=args.collar)
            der_total = errors if der_total is None else der_total + errors
        meter.update(i)
    embeddings: dict[str, np.ndarray | None] = {}
    for label, enrol, test in trials:
        for rel in (enrol, test):
            if rel not in embeddings:
                path = folder / rel
                if not path.is_file():
                    raise CliError(f"trials.txt names {rel}, which is not in {folder}")
                embeddings[rel] = run_clip(models, config, path, {"embeddings"}).embedding()
                meter.update(len(scored) + len(embeddings))
    meter.close()
    print(f"eval: {len(scored)} clip(s)" + (f", {len(embeddings)} verification clip(s)" if trials else "")
          + f" in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    report: dict[str, Any] = {"folder": str(folder), "models": models.ids, "window": config.window, "hop": config.hop,
                              "task_windows": {task: {"window": tw.window, "hop": tw.hop}
                                               for task, tw in config.task_windows.items()}}
    if refs_text:
        report["clips_captions"] = len(refs_text)
        report["captions_decoder"] = models.captions.decoding
        report["cer"] = round(metrics.cer(refs_text, hyps_text), 4)
        report["wer"] = round(metrics.wer(refs_text, hyps_text), 4)
    if der_total is not None:
        report["clips_diarization"] = len(with_rttm)
        report["collar"] = args.collar
        report["der"] = round(der_total.der, 4)
        report["missed"] = round(der_total.missed / max(der_total.total, 1e-9), 4)
        report["false_alarm"] = round(der_total.false_alarm / max(der_total.total, 1e-9), 4)
        report["confusion"] = round(der_total.confusion / max(der_total.total, 1e-9), 4)
    if trials:
        scores, same = [], []
        for label, enrol, test in trials:
            a, b = embeddings[enrol], embeddings[test]
            if a is None or b is None:
                continue  # too short for an x-vector: counted below
            scores.append(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
            same.append(label)
        report["trials"] = len(scores)
        report["trials_without_embedding"] = len(trials) - len(scores)
        try:
            eer, threshold = metrics.equal_error_rate(scores, same)
        except ValueError as exc:
            raise CliError(f"cannot compute the EER: {exc}") from None
        report["eer"] = round(eer, 4)
        report["eer_threshold"] = round(threshold, 4)
    if labels:
        report.update(classification_report(labels, predictions))
        report["classified"] = "+".join(sorted(modes)) or "nothing"
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if isinstance(value, float) and key in ("cer", "wer", "der", "missed", "false_alarm", "confusion", "eer",
                                                    "accuracy"):
                value = f"{100 * value:.2f}%"
            elif key == "accuracy_by_label":
                value = ", ".join(f"{label} {100 * acc:.1f}%" for label, acc in value.items())
            elif key == "confusions":
                value = ", ".join(f"{pair} x{n}" for pair, n in value.items()) or "none"
            print(f"{key:>26}: {value}")
    return 0


def classification_report(labels: dict[str, str], predictions: dict[str, str | None]) -> dict[str, Any]:
    """Accuracy of the clips' predicted classes against their ``NAME.label`` classes.

    Args:
        labels: clip name -> reference class.
        predictions: clip name -> predicted class (:func:`clip_prediction`; ``None``: the
            clip got no classification, counted as wrong).

    Returns:
        ``clips_classification`` (clips scored), ``accuracy`` (correct / clips, in [0, 1]),
        ``clips_unclassified``, ``accuracy_by_label`` ({class: accuracy over its clips},
        classes sorted) and ``confusions`` ({"reference>predicted": clips}, most first;
        an unclassified clip shows as ``"reference>none"``).
    """
    names = sorted(labels)
    correct = [predictions.get(n) == labels[n] for n in names]
    by_label: dict[str, list[bool]] = {}
    confusions: dict[str, int] = {}
    for name, ok in zip(names, correct):
        by_label.setdefault(labels[name], []).append(ok)
        if not ok:
            pair = f"{labels[name]}>{predictions.get(name) or 'none'}"
            confusions[pair] = confusions.get(pair, 0) + 1
    return {
        "clips_classification": len(names),
        "accuracy": round(sum(correct) / max(len(names), 1), 4),
        "clips_unclassified": sum(predictions.get(n) is None for n in names),
        "accuracy_by_label": {label: round(sum(v) / len(v), 4) for label, v in sorted(by_label.items())},
        "confusions": dict(sorted(confusions.items(), key=lambda item: (-item[1], item[0]))),
    }
