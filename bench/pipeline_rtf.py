"""Full three-task pipeline vs a naive transformers loop, and caption latency at real-time pace.

Builds three random-weight checkpoints of wavlm-base-plus size (CTC, frame classification,
x-vector) in Hugging Face format, then over 60 s of real speech (the LibriVox clips in
tests/data, repeated) at the engine's default window/hop:

1. naive: a hand-rolled loop that runs the three transformers models (fp32, as loaded by
   ``from_pretrained``) on the same windows, with Wav2Vec2FeatureExtractor normalisation;
2. ours: ``Engine.run_offline`` with the project's runners (dtype ``auto``: bf16 where the
   CPU supports it), stitching included;
3. live: the engine fed by a ``FileSource`` at real-time pace; for every caption word, the
   latency from the audio time of its end to the wall time the first partial / the final
   event containing it was published.

Prints both real-time factors (compute seconds / audio seconds), their ratio and the latency
percentiles, all measured in this one run. Needs the test extra (transformers).

Usage: python bench/pipeline_rtf.py [--seconds 60] [--threads 2] [--skip-live]
"""

from __future__ import annotations

import argparse
import json
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


def build_checkpoints(root: Path) -> dict[str, Path]:
    """Random-weight base-plus-size checkpoints written with transformers' save_pretrained."""
    from transformers import (Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, WavLMConfig,
                              WavLMForAudioFrameClassification, WavLMForCTC, WavLMForXVector)

    torch.manual_seed(0)
    base = dict(vocab_size=len(VOCAB), pad_token_id=0, num_labels=2)  # wavlm-base-plus dimensions are the defaults
    out = {}
    for task, cls, extra in (
        ("captions", WavLMForCTC, {}),
        ("diarization", WavLMForAudioFrameClassification, {"use_weighted_layer_sum": True}),
        ("embeddings", WavLMForXVector, {"use_weighted_layer_sum": True}),
    ):
        model = cls(WavLMConfig(**base, **extra)).eval()
        if task == "captions":
            calibrate_ctc_head(model)
        folder = root / task
        model.save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=task != "captions", return_attention_mask=True).save_pretrained(folder)
        if task == "captions":
            (folder / "vocab.json").write_text(json.dumps(VOCAB))
            Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), pad_token="[PAD]", unk_token="[UNK]",
                                 bos_token=None, eos_token=None).save_pretrained(folder)
        out[task] = folder
    return out


def calibrate_ctc_head(model) -> None:
    """Make a random CTC head behave like a trained one on speech: sharpen it so the argmax
    changes from frame to frame, then bias blank ([PAD], id 0) to win about half of the
    frames and the word delimiter (|, id 2) a fifth of the rest, so that words close and
    the caption latency can be measured over many words."""
    x = torch.from_numpy(speech(4.0))[None]
    with torch.no_grad():
        model.lm_head.weight *= 40
        logits = model(x).logits[0]
        others = logits.clone()
        others[:, 0] = -float("inf")
        model.lm_head.bias[0] += float(torch.quantile(others.max(-1).values - logits[:, 0], 0.5))
        logits = model(x).logits[0]
        speechy = logits.argmax(-1) != 0
        others = logits[speechy].clone()
        others[:, [0, 2]] = -float("inf")
        model.lm_head.bias[2] += float(torch.quantile(others.max(-1).values - logits[speechy, 2], 0.2))


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


def runners(folders: dict[str, Path], dtype: str):
    from wavlm_live.engine.tasks import CTCRunner, FrameRunner, XVectorRunner
    from wavlm_live.model import load_pretrained

    return {
        "captions": CTCRunner(load_pretrained(folders["captions"], dtype=dtype)),
        "diarization": FrameRunner(load_pretrained(folders["diarization"], dtype=dtype)),
        "embeddings": XVectorRunner(load_pretrained(folders["embeddings"], dtype=dtype)),
    }


def ours_offline(models, audio: np.ndarray) -> tuple[float, float]:
    """(wall seconds, model seconds) of Engine.run_offline over ``audio``."""
    from wavlm_live.engine.bus import EventBus
    from wavlm_live.engine.engine import Engine, EngineConfig

    engine = Engine(EngineConfig(realtime=False), EventBus(), **models)
    t0 = time.perf_counter()
    engine.run_offline(audio[i : i + 320] for i in range(0, len(audio), 320))
    return time.perf_counter() - t0, engine.compute_seconds


def live_latency(models, audio: np.ndarray, tmp: Path) -> dict[str, float]:
    """Caption latency percentiles at real-time pace (FileSource, speed 1)."""
    from wavlm_live.audio import FileSource
    from wavlm_live.engine.bus import EventBus
    from wavlm_live.engine.engine import Engine, EngineConfig
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
    engine = Engine(EngineConfig(), bus, source_stats=source.stats, **models)
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
    return {
        "words": len(final),
        "first_seen_p50_s": round(p(seen.values(), 50), 3),
        "first_seen_p95_s": round(p(seen.values(), 95), 3),
        "final_p50_s": round(p(final.values(), 50), 3),
        "final_p95_s": round(p(final.values(), 95), 3),
        "windows_skipped": stats[-1].windows_skipped if stats else -1,
        "live_rtf_last": stats[-1].rtf if stats else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-live", action="store_true", help="skip the real-time latency run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from wavlm_live.engine.windows import WindowPlan
    from wavlm_live.engine.engine import EngineConfig

    audio = speech(args.seconds)
    cfg = EngineConfig()
    plan = WindowPlan(cfg.window, cfg.hop)
    windows = plan.windows_for(len(audio))
    with tempfile.TemporaryDirectory() as tmp:
        folders = build_checkpoints(Path(tmp))
        naive = naive_loop(folders, audio, windows)
        result = {"audio_s": args.seconds, "window_s": plan.window_seconds, "hop_s": plan.hop_seconds,
                  "windows": len(windows), "threads": args.threads,
                  "naive_transformers_fp32_rtf": round(naive / args.seconds, 3)}
        for dtype in ("float32", "auto"):
            models = runners(folders, dtype)
            wall, _ = ours_offline(models, audio)
            result[f"ours_{dtype}_rtf"] = round(wall / args.seconds, 3)
            result[f"ours_{dtype}_over_naive"] = round(wall / naive, 3)
        if not args.skip_live:
            result.update(live_latency(runners(folders, "auto"), audio, Path(tmp)))
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
