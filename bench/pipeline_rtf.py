"""Full three-task pipeline: a naive transformers loop, today's schedule and the per-task
schedule, with live latency and agreement with a float32 reference, all in one run.

Builds three random-weight checkpoints of wavlm-base-plus size (CTC, frame classification,
x-vector) in Hugging Face format. The CTC head is made confident on speech
(:func:`calibrate_ctc_head`); the diarization head keeps one local speaker active on most
speech and the other silent (:func:`calibrate_frame_head`), so that a local speaker has
solo speech and the x-vector model really runs (a random head leaves nobody alone long
enough and a "three-task" figure would measure two). Then, on the same ``--seconds`` of
real speech (the LibriVox clips in tests/data, repeated):

1. ``naive``: a hand-rolled loop running the three transformers models (fp32, as loaded by
   ``from_pretrained``) on every 4 s / 1 s window, with Wav2Vec2FeatureExtractor
   normalisation;
2. ``reference``: ``Engine.run_offline`` in float32 at 4 s / 1 s for every task, x-vectors
   every window, no speech gate: the outputs the fast settings are compared with;
3. ``today``: the engine's former defaults (one 4 s / 1 s schedule, x-vectors every
   window), dtype ``auto`` (bf16 where the CPU supports it), speech gate on;
4. ``new``: the command line's defaults (per-task windows, x-vectors on demand), dtype
   ``auto``, speech gate on; ``--captions-window`` etc. change them.

For each: RTF (wall seconds / audio seconds), model passes and the audio seconds each model
read; for ``today`` and ``new`` the agreement with ``reference`` (word error rate between
the final captions, by jiwer; share of frames whose settled speaker set is equal, speaker
ids matched by co-occurrence) and, unless ``--skip-live``, the latency at real-time pace
(FileSource, speed 1) of every caption word: from the audio time of its end to the wall
time of the first partial (or final) containing it, and to its final; with the windows the
live run skipped or widened. Needs the test extra (transformers, jiwer).

With ``--shared-encoder``, the new settings run once more offline on checkpoints whose
diarization and x-vector models hold the captions model's conv feature encoder (as
fine-tuning with a frozen encoder leaves them): one encoder module, its output reused by
the x-vector pass on each diarization window (``encoder_reused``), and the RTF against
``new``.

Usage: python bench/pipeline_rtf.py [--seconds 60] [--threads 2] [--skip-live] [--skip-naive]
       [--runs reference,today,new] [--shared-encoder]
       [--captions-window 2 --captions-hop 0.5 --diarization-window 4 --diarization-hop 1
        --embedding-interval 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
VOCAB = {"[PAD]": 0, "[UNK]": 1, "|": 2, **{c: i + 3 for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}, "'": 29}


def build_checkpoints(root: Path, shared_encoder: bool = False) -> dict[str, Path]:
    """Random-weight base-plus-size checkpoints written with transformers' save_pretrained;
    with ``shared_encoder`` the diarization and x-vector models get the captions model's
    conv feature encoder (as fine-tuning with a frozen encoder leaves it)."""
    from transformers import (Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, WavLMConfig,
                              WavLMForAudioFrameClassification, WavLMForCTC, WavLMForXVector)

    torch.manual_seed(0)
    base = dict(vocab_size=len(VOCAB), pad_token_id=0, num_labels=2)  # wavlm-base-plus dimensions are the defaults
    out = {}
    encoder = None
    for task, cls, extra in (
        ("captions", WavLMForCTC, {}),
        ("diarization", WavLMForAudioFrameClassification, {"use_weighted_layer_sum": True}),
        ("embeddings", WavLMForXVector, {"use_weighted_layer_sum": True}),
    ):
        model = cls(WavLMConfig(**base, **extra)).eval()
        if shared_encoder and encoder is not None:
            model.wavlm.feature_extractor.load_state_dict(encoder)
        encoder = model.wavlm.feature_extractor.state_dict()
        if task == "captions":
            calibrate_ctc_head(model)
        elif task == "diarization":
            calibrate_frame_head(model)
        folder = root / task
        model.save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=task != "captions", return_attention_mask=True).save_pretrained(folder)
        if task == "captions":
            (folder / "vocab.json").write_text(json.dumps(VOCAB))
            Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), pad_token="[PAD]", unk_token="[UNK]",
                                 bos_token=None, eos_token=None).save_pretrained(folder)
        out[task] = folder
    return out


def calibrate_frame_head(model) -> None:
    """Make the random diarization head keep local speaker 0 active on about 85% of the
    frames of speech (its logit follows the content, so the frames near the threshold
    test the agreement) and speaker 1 silent: speaker 0 then has solo speech and gets
    x-vectors."""
    x = torch.from_numpy(speech(8.0))[None]
    with torch.no_grad():
        model.classifier.weight *= 0.05
        logits = model(x).logits[0]
        model.classifier.bias[0] -= float(torch.quantile(logits[:, 0], 0.15))
        model.classifier.bias[1] -= float(logits[:, 1].max()) + 5.0


def calibrate_ctc_head(model) -> None:
    """Make a random CTC head behave like a confident trained one on speech: the letters
    (ids 3-28) and the delimiter (|, id 2) read the 27 leading principal directions of the
    backbone's hidden states on 8 s of speech (4 s windows), so the winning token changes
    with the content and wins by a margin far above bf16 rounding (a random head's
    argmax flips on noise); blank ([PAD], id 0) wins about half of the frames and the
    delimiter about a fifth of the rest, so words close and latency is measured over
    many words."""
    x = torch.from_numpy(speech(8.0))
    with torch.no_grad():
        hidden = torch.cat([model.wavlm(x[s : s + 64000][None]).last_hidden_state[0] for s in (0, 64000)])
        mean = hidden.mean(0)
        _, _, v = torch.linalg.svd(hidden - mean, full_matrices=False)
        weight = torch.zeros_like(model.lm_head.weight)
        bias = torch.zeros_like(model.lm_head.bias)
        for k, token in enumerate([*range(3, 29), 2]):
            weight[token] = 10 * v[k]
            bias[token] = -10 * float(mean @ v[k])
        bias[[1, 29]] = -1e4  # [UNK] and ' never win
        logits = hidden @ weight.T + bias
        bias[0] = float(torch.quantile(logits[:, 3:29].max(-1).values, 0.5))
        logits = hidden @ weight.T + bias
        speechy = logits[:, 3:29].max(-1).values > bias[0]
        letters = logits[speechy][:, 3:29].max(-1).values
        bias[2] += float(torch.quantile(letters - logits[speechy, 2], 0.2))
        model.lm_head.weight.copy_(weight)
        model.lm_head.bias.copy_(bias)


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of real speech: the LibriVox clips concatenated and repeated."""
    clips = [sf.read(p, dtype="float32")[0] for p in sorted(DATA.glob("sense_and_sensibility_*.wav"))]
    audio = np.concatenate(clips)
    reps = int(np.ceil(seconds * 16000 / len(audio)))
    return np.tile(audio, reps)[: int(seconds * 16000)]


def naive_loop(folders: dict[str, Path], audio: np.ndarray, windows) -> float:
    """Seconds a plain transformers loop needs for the three models on every window."""
    from transformers import (Wav2Vec2FeatureExtractor, WavLMForAudioFrameClassification, WavLMForCTC,
                              WavLMForXVector)

    models = {
        "captions": WavLMForCTC.from_pretrained(folders["captions"]).eval(),
        "diarization": WavLMForAudioFrameClassification.from_pretrained(folders["diarization"]).eval(),
        "embeddings": WavLMForXVector.from_pretrained(folders["embeddings"]).eval(),
    }
    fe = {t: Wav2Vec2FeatureExtractor.from_pretrained(f) for t, f in folders.items()}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for w in windows:
            x = audio[w.start : w.end]
            for task, model in models.items():
                inputs = fe[task](x, sampling_rate=16000, return_tensors="pt")
                model(inputs["input_values"])
    return time.perf_counter() - t0


class PassCounter:
    """Counts the windows each model's forward passes read (batch rows and their audio
    seconds), by wrapping each runner's input conversion, which every pass goes through."""

    def __init__(self, models) -> None:
        self.passes = {task: 0 for task in models}
        self.seconds = {task: 0.0 for task in models}
        for task, runner in models.items():
            runner._input = self._wrap(task, runner._input)

    def _wrap(self, task, convert):
        def counted(audio):
            x = convert(audio)
            self.passes[task] += int(x.shape[0])
            self.seconds[task] += float(x.shape[0] * x.shape[-1] / 16000)
            return x
        return counted

    def reset(self) -> None:
        for task in self.passes:
            self.passes[task], self.seconds[task] = 0, 0.0


def runners(folders: dict[str, Path], dtype: str, device: str):
    from wavlm_live.engine.tasks import CTCRunner, FrameRunner, XVectorRunner
    from wavlm_live.model import load_pretrained

    return {
        "captions": CTCRunner(load_pretrained(folders["captions"], dtype=dtype, device=device)),
        "diarization": FrameRunner(load_pretrained(folders["diarization"], dtype=dtype, device=device)),
        "embeddings": XVectorRunner(load_pretrained(folders["embeddings"], dtype=dtype, device=device)),
    }


def configs(args) -> dict:
    """The engine settings of each run (see the module docstring)."""
    from dataclasses import replace

    from wavlm_live.cli.app import engine_config
    from wavlm_live.cli.options import AnalysisOptions
    from wavlm_live.engine.engine import EngineConfig
    from wavlm_live.engine.vad import VADConfig

    opts = AnalysisOptions(models={}, captions_window=args.captions_window, captions_hop=args.captions_hop,
                           diarization_window=args.diarization_window, diarization_hop=args.diarization_hop,
                           embedding_interval=args.embedding_interval)
    new = engine_config(opts, demo=False, realtime=False)
    return {
        "reference": EngineConfig(realtime=False),
        "today": EngineConfig(realtime=False, vad=VADConfig()),
        "new": new if args.vad else replace(new, vad=None),
    }


def run_offline(models, config, audio: np.ndarray):
    """(wall seconds, events, engine) of Engine.run_offline over ``audio``."""
    from wavlm_live.engine.bus import EventBus
    from wavlm_live.engine.engine import Engine

    bus, events = EventBus(), []
    bus.subscribe(events.append)
    engine = Engine(config, bus, **models)
    t0 = time.perf_counter()
    engine.run_offline(audio[i : i + 320] for i in range(0, len(audio), 320))
    return time.perf_counter() - t0, events, engine


def frame_labels(events, n_frames: int) -> list[tuple[str, ...]]:
    """Settled speaker sets per frame from the diarization events."""
    from wavlm_live.events import DiarizationEvent

    labels: list[tuple[str, ...]] = [()] * n_frames
    for e in events:
        if isinstance(e, DiarizationEvent):
            first = round(e.start / 0.02)
            for i, lab in enumerate(e.labels):
                if first + i < n_frames:
                    labels[first + i] = tuple(lab)
    return labels


def agreement(ref_events, events, n_frames: int) -> dict[str, float]:
    """WER between the final caption texts (jiwer; the reference as truth) and the share
    of frames with equal speaker sets, the other run's ids mapped to the reference's by
    co-occurrence (Hungarian assignment)."""
    import jiwer
    from scipy.optimize import linear_sum_assignment

    from wavlm_live.events import CaptionEvent

    def text(evs):
        return " ".join(e.text for e in evs if isinstance(e, CaptionEvent) and e.final).split()

    ref_words, words = text(ref_events), text(events)
    wer = jiwer.wer(" ".join(ref_words), " ".join(words)) if ref_words else float("nan")
    a, b = frame_labels(ref_events, n_frames), frame_labels(events, n_frames)
    ids_a = sorted({s for lab in a for s in lab})
    ids_b = sorted({s for lab in b for s in lab})
    mapping = {}
    if ids_a and ids_b:
        co = np.zeros((len(ids_b), len(ids_a)))
        for la, lb in zip(a, b):
            for sb in lb:
                for sa in la:
                    co[ids_b.index(sb), ids_a.index(sa)] += 1
        rows, cols = linear_sum_assignment(co, maximize=True)
        mapping = {ids_b[r]: ids_a[c] for r, c in zip(rows, cols)}
    equal = sum(set(la) == {mapping.get(s, "?" + s) for s in lb} for la, lb in zip(a, b))
    return {"caption_wer_vs_reference": round(float(wer), 4), "words_reference": len(ref_words), "words": len(words),
            "frame_labels_equal": round(equal / max(1, n_frames), 4)}


def live_latency(models, config, audio: np.ndarray, tmp: Path) -> dict[str, float]:
    """Caption latency percentiles at real-time pace (FileSource, speed 1)."""
    from dataclasses import replace

    from wavlm_live.audio import FileSource
    from wavlm_live.engine.bus import EventBus
    from wavlm_live.engine.engine import Engine
    from wavlm_live.events import CaptionEvent, StatsEvent

    path = tmp / "speech.wav"
    sf.write(path, audio, 16000)
    bus = EventBus()
    first_partial: dict[tuple[str, float], float] = {}
    final: dict[tuple[str, float], float] = {}
    stats: list[StatsEvent] = []

    def on_event(event) -> None:
        now = time.monotonic()
        if isinstance(event, CaptionEvent):
            for w in event.words:
                key = (w.text, w.start)
                if event.final:
                    final.setdefault(key, now - (t0 + w.end))
                else:
                    first_partial.setdefault(key, now - (t0 + w.end))
        elif isinstance(event, StatsEvent):
            stats.append(event)

    bus.subscribe(on_event)
    source = FileSource(path, speed=1.0)
    engine = Engine(replace(config, realtime=True), bus, source_stats=source.stats, **models)
    engine.start()
    t0 = time.monotonic()
    source.start(engine.feed)
    source.finished.wait()
    engine.close_input()
    engine.join()
    # a word first seen in a final (never partial) counts its final time as first sight
    seen = {k: min(v, final.get(k, v)) for k, v in first_partial.items()}
    for k, v in final.items():
        seen.setdefault(k, v)
    p = lambda xs, q: float(np.percentile(np.array(list(xs)), q)) if xs else float("nan")  # noqa: E731
    rtfs = [s.rtf for s in stats[len(stats) // 4 :]]
    return {
        "words": len(final),
        "first_seen_p50_s": round(p(seen.values(), 50), 3),
        "first_seen_p95_s": round(p(seen.values(), 95), 3),
        "final_p50_s": round(p(final.values(), 50), 3),
        "final_p95_s": round(p(final.values(), 95), 3),
        "windows_skipped": stats[-1].windows_skipped if stats else -1,
        "windows_widened": stats[-1].windows_widened if stats else -1,
        "live_rtf_mean": round(float(np.mean(rtfs)), 3) if rtfs else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the naive loop stays on the CPU)")
    parser.add_argument("--skip-live", action="store_true", help="skip the real-time latency runs")
    parser.add_argument("--skip-naive", action="store_true", help="skip the transformers loop")
    parser.add_argument("--no-vad", dest="vad", action="store_false", help="the new settings without the speech gate")
    parser.add_argument("--runs", default="reference,today,new",
                        help="comma-separated runs (reference is needed for the agreement figures)")
    parser.add_argument("--shared-encoder", action="store_true",
                        help="also run the new settings on checkpoints sharing one conv feature encoder")
    for opt in ("--captions-window", "--captions-hop", "--diarization-window", "--diarization-hop",
                "--embedding-interval"):
        parser.add_argument(opt, type=float, default=None, help="the new settings (default: the command line's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from wavlm_live.engine.windows import WindowPlan, frames_for_samples

    audio = speech(args.seconds)
    n_frames = frames_for_samples(len(audio))
    result: dict = {"audio_s": args.seconds, "threads": args.threads, "device": args.device,
                    "load_average_start": round(os.getloadavg()[0], 2)}
    cfgs = configs(args)
    with tempfile.TemporaryDirectory() as tmp:
        folders = build_checkpoints(Path(tmp))
        if not args.skip_naive:
            naive = naive_loop(folders, audio, WindowPlan(4.0, 1.0).windows_for(len(audio)))
            result["naive"] = {"rtf": round(naive / args.seconds, 3)}
        events = {}
        runs = [(n, d) for n, d in (("reference", "float32"), ("today", "auto"), ("new", "auto"))
                if n in args.runs.split(",")]
        for name, dtype in runs:
            models = runners(folders, dtype, args.device)
            counter = PassCounter(models)
            wall, events[name], engine = run_offline(models, cfgs[name], audio)
            entry = {"rtf": round(wall / args.seconds, 3), "schedule": engine.schedule_description(),
                     "embedding_interval": cfgs[name].embedding_interval, "vad": cfgs[name].vad is not None,
                     "windows_silent": engine.windows_silent,
                     "passes": dict(counter.passes), "model_audio_s": {k: round(v, 1) for k, v in counter.seconds.items()}}
            if name != "reference" and "reference" in events:
                entry.update(agreement(events["reference"], events[name], n_frames))
            if name != "reference" and "reference" in result:
                entry["rtf_over_reference"] = round(wall / (result["reference"]["rtf"] * args.seconds), 3)
            if name != "reference":
                if "naive" in result:
                    entry["rtf_over_naive"] = round(entry["rtf"] / result["naive"]["rtf"], 3)
                if not args.skip_live:
                    counter.reset()
                    entry["live"] = live_latency(models, cfgs[name], audio, Path(tmp))
                    entry["live"]["passes"] = dict(counter.passes)
            result[name] = entry
            print(name, json.dumps(entry), file=sys.stderr, flush=True)
        if args.shared_encoder:
            shared = runners(build_checkpoints(Path(tmp) / "shared", shared_encoder=True), "auto", args.device)
            counter = PassCounter(shared)
            wall, _, engine = run_offline(shared, cfgs["new"], audio)
            memo = shared["embeddings"].model.backbone.feature_extractor.shared_memo
            entry = {"rtf": round(wall / args.seconds, 3), "passes": dict(counter.passes),
                     "encoder_calls": memo.calls, "encoder_reused": memo.hits,
                     "one_encoder_module": len({id(r.model.backbone.feature_extractor) for r in shared.values()}) == 1}
            if "new" in result:
                entry["rtf_over_new"] = round(entry["rtf"] / result["new"]["rtf"], 3)
            result["new_shared_encoder"] = entry
            print("new_shared_encoder", json.dumps(entry), file=sys.stderr, flush=True)
    result["load_average_end"] = round(os.getloadavg()[0], 2)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
