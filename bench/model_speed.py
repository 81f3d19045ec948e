"""Speed and accuracy of our WavLM backbone against transformers' at wavlm-base-plus size.

Random weights (transformers' init, seed 0) in a wavlm-base-plus shaped WavLMForCTC are
saved with transformers' ``save_pretrained`` and loaded with our ``load_pretrained``; the
two backbones (``.wavlm``) then run the same real-speech windows (LibriVox clips from
tests/data) of 1 s, 4 s and 8 s, batch 1, with ``torch.set_num_threads(2)``, under
``torch.inference_mode()``. Runs of the four variants (transformers fp32, ours fp32,
transformers bf16, ours bf16) are interleaved and the fastest of ``--repeats`` runs is kept
for each, so load from other processes hurts both sides alike; both wall-clock and process
CPU time are measured (OpenMP threads wait passively, so CPU time is work done, which is
the steadier number on a shared machine).

Printed per window: times, ours/transformers ratios (bf16 against transformers in bf16 and
in fp32), the max absolute difference of ``last_hidden_state`` against transformers fp32,
the relative RMS error, and the argmax agreement of the CTC head's logits with
transformers fp32. Targets: ours <= 0.9x transformers in fp32, <= 0.45x in bf16.

Usage: python bench/model_speed.py [--seconds 1 4 8] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from wavlm_live.model import load_pretrained  # noqa: E402

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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"best of {args.repeats} interleaved runs; times in ms (wall / CPU)")
    header = (f"{'window':>6}  {'ours':<5} {'vs':<5} {'transformers':>13} {'ours':>13}  {'ratio wall':>10} "
              f"{'ratio cpu':>9}  {'max|diff|':>9} {'rel rms':>8} {'argmax':>7}")
    print(header)
    print("-" * len(header))
    worst: dict[str, float] = {}
    with torch.inference_mode():
        for seconds in args.seconds:
            x = speech(int(seconds * 16000))
            outs = {name: f(x).float() for name, f in variants.items()}  # warm-up and outputs
            wall = {name: [] for name in variants}
            cpu = {name: [] for name in variants}
            for _ in range(args.repeats):
                for name, f in variants.items():
                    w0, c0 = time.perf_counter(), time.process_time()
                    f(x)
                    wall[name].append(time.perf_counter() - w0)
                    cpu[name].append(time.process_time() - c0)
            w = {name: min(t) * 1000 for name, t in wall.items()}
            c = {name: min(t) * 1000 for name, t in cpu.items()}
            ref = outs["hf32"]
            logits_ref = hf.lm_head(hf.wavlm(x).last_hidden_state).argmax(-1)
            for ours, other in (("ours32", "hf32"), ("ours16", "hf16"), ("ours16", "hf32")):
                diff = (outs[ours] - ref).abs().max().item()
                relrms = ((outs[ours] - ref).pow(2).mean() / ref.pow(2).mean()).sqrt().item()
                model = ours32 if ours == "ours32" else ours16
                logits = model.lm_head(model.wavlm(x.to(model.lm_head.weight.dtype)).last_hidden_state)
                agree = (logits.argmax(-1) == logits_ref).float().mean().item()
                rw, rc = w[ours] / w[other], c[ours] / c[other]
                key = f"{ours[4:]} vs {other[2:]}"
                worst[key] = max(worst.get(key, 0.0), rw, rc)
                name = {"32": "fp32", "16": "bf16"}
                print(f"{seconds:>5g}s  {name[ours[4:]]:<5} {name[other[2:]]:<5} "
                      f"{w[other]:6.0f}/{c[other]:6.0f} {w[ours]:6.0f}/{c[ours]:6.0f}  {rw:10.2f} {rc:9.2f}  "
                      f"{diff:9.1e} {relrms:8.4f} {agree:7.1%}")
    print("worst ratios (of wall and CPU): fp32 {:.2f} (target <= 0.90); bf16 vs transformers bf16 {:.2f}, "
          "vs transformers fp32 {:.2f} (target <= 0.45)".format(worst["32 vs 32"], worst["16 vs 16"],
                                                               worst["16 vs 32"]))


if __name__ == "__main__":
    main()
