"""Speed and accuracy of our WavLM backbone against transformers' at wavlm-base-plus size.

Random weights (transformers' init, seed 0) in a wavlm-base-plus shaped WavLMForCTC are
saved with transformers' ``save_pretrained`` and loaded with our ``load_pretrained``; the
two backbones (``.wavlm``) then run the same real-speech windows (a LibriVox clip from
tests/data) of 1 s, 4 s and 8 s, batch 1, with ``torch.set_num_threads(2)``. Runs of the
four variants (transformers fp32, ours fp32, transformers bf16, ours bf16) are interleaved
and the fastest of ``--repeats`` runs is kept for each, so load from other processes hurts
both sides alike. Printed per window: times, ours/transformers ratios (bf16 against
transformers in bf16 and in fp32), the max absolute difference of ``last_hidden_state``
against transformers fp32, the relative RMS error, and the argmax agreement of the CTC head's
logits. Targets: ours <= 0.9x transformers in fp32, <= 0.45x in bf16.

Usage: python bench/model_speed.py [--seconds 1 4 8] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from wavlm_live.model import load_pretrained

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def speech(n_samples: int) -> torch.Tensor:
    """The first ``n_samples`` of the LibriVox clips (16 kHz mono), concatenated. Shape ``[1, N]``."""
    parts, total = [], 0
    for path in sorted(DATA.glob("*.wav")):
        x, sr = sf.read(path, dtype="float32")
        assert sr == 16000 and x.ndim == 1
        parts.append(x)
        total += len(x)
        if total >= n_samples:
            break
    return torch.from_numpy(np.concatenate(parts)[:n_samples])[None]


def build(folder: Path):
    """transformers WavLMForCTC at wavlm-base-plus size, random weights, saved to ``folder``."""
    import transformers

    torch.manual_seed(0)
    config = transformers.WavLMConfig(vocab_size=32)  # defaults are the base / base-plus shape
    hf = transformers.WavLMForCTC(config).eval()
    hf.save_pretrained(str(folder))
    (folder / "vocab.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1}))
    return hf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[1, 4, 8])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        hf = build(Path(tmp))
        ours32 = load_pretrained(tmp, dtype="float32").model
        ours16 = load_pretrained(tmp, dtype="bfloat16").model
    hf16 = copy.deepcopy(hf).to(torch.bfloat16)
    variants = {
        "hf32": lambda x: hf.wavlm(x).last_hidden_state,
        "ours32": lambda x: ours32.wavlm(x).last_hidden_state,
        "hf16": lambda x: hf16.wavlm(x.bfloat16()).last_hidden_state,
        "ours16": lambda x: ours16.wavlm(x.bfloat16()).last_hidden_state,
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, best of {args.repeats} interleaved runs")
    header = (f"{'window':>6} | {'hf32 ms':>8} {'ours32 ms':>9} {'ratio':>5} {'maxdiff':>8} | {'hf16 ms':>8} "
              f"{'ours16 ms':>9} {'/hf16':>5} {'/hf32':>5} {'maxdiff':>8} {'relrms':>7} {'argmax':>7}")
    print(header)
    print("-" * len(header))
    worst = {"fp32": 0.0, "bf16_vs_hf16": 0.0, "bf16_vs_hf32": 0.0}
    with torch.inference_mode():
        for seconds in args.seconds:
            x = speech(int(seconds * 16000))
            outs = {name: f(x).float() for name, f in variants.items()}  # warm-up and outputs
            times = {name: [] for name in variants}
            for _ in range(args.repeats):
                for name, f in variants.items():
                    t0 = time.perf_counter()
                    f(x)
                    times[name].append(time.perf_counter() - t0)
            best = {name: min(t) * 1000 for name, t in times.items()}
            ref = outs["hf32"]
            diff32 = (outs["ours32"] - ref).abs().max().item()
            diff16 = (outs["ours16"] - ref).abs().max().item()
            relrms = ((outs["ours16"] - ref).pow(2).mean() / ref.pow(2).mean()).sqrt().item()
            logits32 = hf.lm_head(hf.wavlm(x).last_hidden_state)
            logits16 = ours16.lm_head(ours16.wavlm(x.bfloat16()).last_hidden_state).float()
            agree = (logits32.argmax(-1) == logits16.argmax(-1)).float().mean().item()
            r32 = best["ours32"] / best["hf32"]
            r16 = best["ours16"] / best["hf16"]
            r16_32 = best["ours16"] / best["hf32"]
            worst = {"fp32": max(worst["fp32"], r32), "bf16_vs_hf16": max(worst["bf16_vs_hf16"], r16),
                     "bf16_vs_hf32": max(worst["bf16_vs_hf32"], r16_32)}
            print(f"{seconds:>5g}s | {best['hf32']:8.1f} {best['ours32']:9.1f} {r32:5.2f} {diff32:8.1e} | "
                  f"{best['hf16']:8.1f} {best['ours16']:9.1f} {r16:5.2f} {r16_32:5.2f} {diff16:8.1e} "
                  f"{relrms:7.4f} {agree:7.1%}")
    print(f"worst ratio fp32 {worst['fp32']:.2f} (target <= 0.90: {'met' if worst['fp32'] <= 0.9 else 'NOT met'}); "
          f"bf16 vs transformers bf16 {worst['bf16_vs_hf16']:.2f}, vs transformers fp32 {worst['bf16_vs_hf32']:.2f} "
          f"(target <= 0.45: {'met' if max(worst['bf16_vs_hf16'], worst['bf16_vs_hf32']) <= 0.45 else 'NOT met'})")


if __name__ == "__main__":
    main()
