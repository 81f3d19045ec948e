#!/usr/bin/env python3
"""Train the small WavLM-architecture demo checkpoints on the synthetic espeak-ng corpus.

Tasks (each a plain `wavlm_live.model` module, saved in the Hugging Face folder format):
  ctc          WavLMForCTC, LibriSpeech letters ([PAD]=0 is the CTC blank, [UNK], |, A-Z, ').
               Examples: 1-3 utterances of random identities joined by pauses, with
               leading/trailing silence; loss: CTC.
  diarization  WavLMForAudioFrameClassification, 2 labels (speaker activity, sigmoid),
               weighted layer sum, initialised from the CTC encoder. Examples: random
               crops of synthetic two-speaker conversations (pauses, turn changes, overlap);
               loss: permutation-invariant BCE (min over the two label orders, per crop).
  embeddings   WavLMForXVector (weighted layer sum, small TDNN), initialised from the
               trained diarization encoder (which has learnt to tell voices apart; from
               the CTC encoder, trained to ignore the speaker, EER stalled at ~25%, and
               from scratch the embeddings collapsed). Examples: single-speaker crops and the frames of one speaker inside
               two-speaker crops (masked statistics pooling, as the streaming engine pools a
               speaker's frames), two crops per identity; loss: angular prototypical
               (Chung et al. 2020) over the identities of the batch, on the embeddings
               themselves (the `classifier` layer is kept at identity, so its logits equal
               the embeddings). (A first try with AM-softmax over all 1344 identities did
               not move in 15 minutes.)

  lid          WavLMForSequenceClassification, one class per language of the corpus
               (`corpus.py build-lid`; id2label = the language codes), weighted layer sum,
               initialised from the first layers of the CTC encoder (the bundled captions
               model by default: --init). Examples: crops of 1-6 s (one length per batch,
               as the streaming engine's windows grow from 1 s to the window length) of 1-3
               utterances of one identity joined by pauses; loss: cross-entropy.

All tasks: AdamW, linear warm-up then cosine decay, gradient clipping at 5, noise
augmentation (white noise at 15-45 dB SNR on half the examples), per-example input
normalisation (as the checkpoints' preprocessor_config.json says). CPU runs in bf16
autocast by default; CUDA is used when present. Training is resumable: OUT/state.pt
holds model, optimiser, step, random states and the best validation score, written at
every evaluation; rerunning the same command continues from it. OUT/best/ is the best
checkpoint so far as a Hugging Face folder, OUT/log.jsonl the progress log.

Usage:
  python scripts/train_demo.py ctc --corpus corpus/demo --out runs/ctc --steps 3000
  python scripts/train_demo.py diarization --corpus corpus/demo --out runs/diar --init runs/ctc/best
  python scripts/train_demo.py embeddings --corpus corpus/demo --out runs/xvec --init runs/diar/best
  python scripts/train_demo.py lid --corpus corpus/lid --out runs/lid --minutes 25 --threads 1
  python scripts/train_demo.py export runs/ctc/best wavlm_live/data/demo/captions --fp16
  python scripts/train_demo.py lm --corpus corpus/demo18 --out wavlm_live/data/demo/captions/language_model

`lm` writes the captions' word language model: an interpolated Kneser-Ney ARPA model of the
training split's transcripts (held-out sentences never enter it) as OUT/lm.arpa, with
OUT/unigrams.txt and OUT/attrs.json (the fusion settings, chosen on the validation
utterances; see docs/demo-models.md): the layout of a Hub checkpoint's language_model/
folder, which transformers' Wav2Vec2ProcessorWithLM (pyctcdecode) loads too. When OUT's
parent is a CTC checkpoint (it has vocab.json), its alphabet.json is written there.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus as C  # noqa: E402  (scripts/corpus.py)

from wavlm_live import metrics  # noqa: E402
from wavlm_live.model import (  # noqa: E402
    CTCVocabulary,
    PreprocessorConfig,
    WavLMConfig,
    WavLMForAudioFrameClassification,
    WavLMForCTC,
    WavLMForSequenceClassification,
    WavLMForXVector,
    load_pretrained,
    save_pretrained,
)

SR = C.SAMPLE_RATE
VOCAB = ("[PAD]", "[UNK]", "|") + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ("'",)
"""LibriSpeech letter vocabulary; id 0 ([PAD]) is the CTC blank."""
CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB)} | {" ": VOCAB.index("|")}
SCORE_BOUNDARY = True
"""The demo LM's score_boundary (chosen on the validation utterances, docs/demo-models.md)."""

BACKBONE = dict(
    hidden_size=256,
    num_attention_heads=4,
    intermediate_size=768,
    conv_dim=(32, 64, 64, 128, 128, 256, 256),
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    num_conv_pos_embeddings=64,
    num_conv_pos_embedding_groups=16,
)
"""Backbone of all three demo checkpoints: the standard conv stack (400-sample receptive
field, 320-sample hop) with narrower channels, a pre-LN transformer with WavLM's gated
relative position bias. About 0.66 M parameters per transformer layer."""
LAYERS = {"ctc": 5, "diarization": 4, "embeddings": 3, "lid": 4}
"""Transformer layers per task; diarization, embeddings and lid keep the first layers of the CTC encoder."""
LID_CROP_SECONDS = (1.0, 6.0)
"""Range of the language-identification crop lengths, seconds (drawn once per batch)."""
DEMO_CAPTIONS = Path(__file__).resolve().parents[1] / "wavlm_live" / "data" / "demo" / "captions"
"""The bundled CTC checkpoint: the default --init of the lid task."""
XVECTOR = dict(tdnn_dim=(192, 192, 192, 192, 512), tdnn_kernel=(5, 3, 3, 1, 1), tdnn_dilation=(1, 2, 3, 1, 1),
               xvector_output_dim=128)
PREPROCESSOR = PreprocessorConfig(do_normalize=True, sampling_rate=SR, return_attention_mask=True)


def make_config(task: str, layers: int | None = None, labels: tuple[str, ...] | None = None) -> WavLMConfig:
    """The demo WavLMConfig of a task ("ctc", "diarization", "embeddings", "lid"; `labels`:
    the class names of "lid", its id2label)."""
    n = layers or LAYERS[task]
    if task == "lid":
        if not labels:
            raise ValueError("the lid config needs its labels (the corpus languages)")
        return WavLMConfig(**BACKBONE, num_hidden_layers=n, use_weighted_layer_sum=True, id2label=tuple(labels),
                           classifier_proj_size=256, architectures=("WavLMForSequenceClassification",))
    if task == "ctc":
        return WavLMConfig(**BACKBONE, num_hidden_layers=n, vocab_size=len(VOCAB), pad_token_id=0,
                           architectures=("WavLMForCTC",))
    if task == "diarization":
        return WavLMConfig(**BACKBONE, num_hidden_layers=n, use_weighted_layer_sum=True,
                           id2label=("LABEL_0", "LABEL_1"), architectures=("WavLMForAudioFrameClassification",))
    if task == "embeddings":
        return WavLMConfig(**BACKBONE, **XVECTOR, num_hidden_layers=n, use_weighted_layer_sum=True,
                           architectures=("WavLMForXVector",))
    raise ValueError(f"unknown task {task!r}")


MODEL_CLASS = {"ctc": WavLMForCTC, "diarization": WavLMForAudioFrameClassification, "embeddings": WavLMForXVector,
               "lid": WavLMForSequenceClassification}


def ctc_vocabulary() -> CTCVocabulary:
    return CTCVocabulary(tokens=VOCAB, pad_token="[PAD]", unk_token="[UNK]", word_delimiter_token="|",
                         bos_token=None, eos_token=None, do_lower_case=False)


def encode_text(text: str) -> list[int]:
    """Normalised transcript -> label ids (space -> |); unknown characters -> [UNK]."""
    return [CHAR_TO_ID.get(c, 1) for c in text]


def greedy_decode(ids: np.ndarray) -> str:
    """Per-frame argmax ids [T] -> text: group repeats, drop blanks, | -> space."""
    out, prev = [], -1
    for i in ids.tolist():
        if i != prev and i != 0:
            out.append(" " if i == 2 else VOCAB[i])
        prev = i
    return " ".join("".join(out).split())


# ----------------------------------------------------------------------------- batches

def add_noise(rng: np.random.Generator, x: np.ndarray, p: float = 0.5, snr_db=(15.0, 45.0)) -> np.ndarray:
    """With probability p, add white noise at a random SNR (dB, relative to the signal's mean power)."""
    if rng.random() >= p:
        return x
    power = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    sigma = math.sqrt(power / 10 ** (rng.uniform(*snr_db) / 10))
    return (x + rng.normal(0.0, sigma, len(x))).astype(np.float32)


def pad_batch(xs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise each example (preprocessor), right-pad with zeros; returns x [B, N], mask [B, N] int64."""
    n = max(len(x) for x in xs)
    x = torch.zeros(len(xs), n)
    mask = torch.zeros(len(xs), n, dtype=torch.long)
    for i, a in enumerate(xs):
        x[i, :len(a)] = torch.from_numpy(PREPROCESSOR.normalize(a))
        mask[i, :len(a)] = 1
    return x, mask


def n_frames(n_samples: int) -> int:
    """WavLM frames for n_samples: floor((n - 400) / 320) + 1, 0 below 400."""
    return 0 if n_samples < C.FRAME_WINDOW else (n_samples - C.FRAME_WINDOW) // C.FRAME_HOP + 1


def silence(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    return np.zeros(int(rng.uniform(lo, hi) * SR), np.float32)


def ctc_example(rng: np.random.Generator, uset: C.UtteranceSet, target_s: float) -> tuple[np.ndarray, str]:
    """1-3 random utterances joined by 0.15-0.8 s pauses, 0-0.4 s silence each end, about target_s long."""
    parts, texts, total = [silence(rng, 0.0, 0.4)], [], 0.0
    while len(texts) < 3 and (not texts or total < target_s * 0.7):
        i = int(rng.integers(len(uset)))
        if texts:
            parts.append(silence(rng, 0.15, 0.8))
        a = uset.audio(i)
        parts.append(a)
        texts.append(uset.utts[i]["norm"])
        total += len(a) / SR
    parts.append(silence(rng, 0.0, 0.4))
    return add_noise(rng, np.concatenate(parts)), " ".join(texts)


def conversation_crop(rng: np.random.Generator, uset: C.UtteranceSet, spk_ids: list[int], crop_s: float,
                      n_turns: int = 6, p_overlap: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """A crop of crop_s seconds from a synthetic conversation of the given speakers.

    spk_ids: indices into uset.speakers. Returns audio float32 [N] and frame labels
    [frames_for_samples(N), len(spk_ids)] (0/1, speaker order as spk_ids).
    """
    seq = C.conversation_turns(rng, len(spk_ids), max(n_turns, len(spk_ids)))
    turns = []
    for s in seq:
        idx = uset.by_speaker[uset.speakers[spk_ids[s]]]
        i = idx[int(rng.integers(len(idx)))]
        turns.append((s, uset.audio(i), ""))
    mix, segs = C.mix_conversation(turns, rng, len(spk_ids), p_overlap=p_overlap)
    n = min(len(mix), int(crop_s * SR) // C.FRAME_HOP * C.FRAME_HOP)
    start = int(rng.integers(0, len(mix) - n + 1)) // C.FRAME_HOP * C.FRAME_HOP
    x = add_noise(rng, mix[start:start + n])
    names = [f"spk{k}" for k in range(len(spk_ids))]
    y = C.frame_labels(segs, names, n_frames(n), offset=start / SR)
    return x, y


def pick_speakers(rng: np.random.Generator, uset: C.UtteranceSet, n: int) -> list[int]:
    """n speaker indices of uset with pairwise different variants (distinct identities if 100 draws fail)."""
    if n > len(uset.speakers):
        raise ValueError(f"asked for {n} speakers, the set has {len(uset.speakers)}")
    for _ in range(100):
        ids = [int(i) for i in rng.choice(len(uset.speakers), size=n, replace=False)]
        if len({C.Speaker.parse(uset.speakers[i]).variant for i in ids}) == n:
            return ids
    return ids




# ----------------------------------------------------------------------------- tasks

class Task:
    """Batches, loss and validation of one task."""

    metric = "loss"

    def __init__(self, args, train: C.UtteranceSet, val: C.UtteranceSet, val_unseen: C.UtteranceSet):
        self.args, self.train, self.val, self.val_unseen = args, train, val, val_unseen

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return []


class CTCTask(Task):
    metric = "cer_unseen"

    def batch(self, rng):
        target = rng.uniform(2.0, 10.0)
        n = max(1, int(self.args.batch_seconds / (target + 1.0)))
        xs, texts = zip(*[ctc_example(rng, self.train, target) for _ in range(n)])
        x, mask = pad_batch(list(xs))
        return x, mask, [encode_text(t) for t in texts], sum(len(a) for a in xs) / SR

    def loss(self, model, batch, device):
        x, mask, labels, _ = batch
        out = model(x.to(device), mask.to(device))
        logp = F.log_softmax(out.logits.float(), dim=-1).transpose(0, 1)  # [T, B, V]
        in_len = model.wavlm.frame_lengths(mask.to(device))
        tgt = torch.tensor([i for l in labels for i in l], dtype=torch.long)
        tgt_len = torch.tensor([len(l) for l in labels], dtype=torch.long)
        return F.ctc_loss(logp, tgt, in_len.cpu(), tgt_len, blank=0, zero_infinity=True)

    @torch.no_grad()
    def transcribe(self, model, audios: list[np.ndarray], device, autocast) -> list[str]:
        hyps = []
        for k in range(0, len(audios), 16):
            x, mask = pad_batch(audios[k:k + 16])
            with autocast():
                out = model(x.to(device), mask.to(device))
            lens = model.wavlm.frame_lengths(mask.to(device)).tolist()
            ids = out.logits.float().argmax(-1).cpu().numpy()
            hyps += [greedy_decode(ids[b, :lens[b]]) for b in range(len(lens))]
        return hyps

    def evaluate(self, model, device, autocast) -> dict:
        res = {}
        for name, uset in (("seen", self.val), ("unseen", self.val_unseen)):
            idx = range(min(len(uset), self.args.eval_items))
            refs = [uset.utts[i]["norm"] for i in idx]
            hyps = self.transcribe(model, [uset.audio(i) for i in idx], device, autocast)
            res[f"cer_{name}"] = metrics.cer(refs, hyps)
            res[f"wer_{name}"] = metrics.wer(refs, hyps)
            res[f"example_{name}"] = f"{refs[0]} -> {hyps[0]}"
        return res


def pit_bce(logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant BCE for 2 speakers: logits, y [B, T, 2]; valid [B, T] bool.

    Per crop, the smaller of the mean BCE against (y0, y1) and against (y1, y0); mean over crops.
    """
    w = valid.float()[..., None]
    l0 = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum((1, 2))
    l1 = (F.binary_cross_entropy_with_logits(logits, y.flip(-1), reduction="none") * w).sum((1, 2))
    return (torch.minimum(l0, l1) / (2 * w.sum((1, 2)).clamp(min=1))).mean()


def activity_to_turns(p: np.ndarray, threshold: float = 0.5, min_frames: int = 0) -> list[tuple[float, float, str]]:
    """Frame activity [T, S] in [0, 1] -> turns (start s, end s, "spk{j}"); frame i spans its hop."""
    turns = []
    for j in range(p.shape[1]):
        a = np.concatenate([[False], p[:, j] > threshold, [False]])
        d = np.diff(a.astype(np.int8))
        for s, e in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]):
            if e - s >= min_frames:
                turns.append((s * C.FRAME_HOP / SR, e * C.FRAME_HOP / SR, f"spk{j}"))
    return turns


def labels_to_turns(y: np.ndarray) -> list[tuple[float, float, str]]:
    return activity_to_turns(y, 0.5)


class DiarizationTask(Task):
    metric = "der"

    def __init__(self, *a):
        super().__init__(*a)
        rng = np.random.default_rng(12345)
        self.val_items = []
        for _ in range(self.args.eval_items // 4):
            n_spk = 1 if rng.random() < 0.1 else 2
            self.val_items.append(conversation_crop(rng, self.val_unseen, pick_speakers(rng, self.val_unseen, n_spk),
                                                    rng.uniform(4.0, 10.0), n_turns=6))

    def batch(self, rng):
        crop = rng.uniform(3.0, 10.0)
        n = max(1, int(self.args.batch_seconds / crop))
        xs, ys = [], []
        for _ in range(n):
            n_spk = 1 if rng.random() < 0.1 else 2
            x, y = conversation_crop(rng, self.train, pick_speakers(rng, self.train, n_spk), crop,
                                     n_turns=int(rng.integers(3, 8)), p_overlap=rng.uniform(0.1, 0.35))
            if y.shape[1] == 1:
                y = np.concatenate([y, np.zeros_like(y)], axis=1)
            xs.append(x)
            ys.append(y)
        x, mask = pad_batch(xs)
        T = max(len(y) for y in ys)
        Y = torch.zeros(len(ys), T, 2)
        for i, y in enumerate(ys):
            Y[i, :len(y)] = torch.from_numpy(y)
        return x, mask, Y, sum(len(a) for a in xs) / SR

    def loss(self, model, batch, device):
        x, mask, Y, _ = batch
        out = model(x.to(device), mask.to(device))
        lens = model.wavlm.frame_lengths(mask.to(device))
        T = out.logits.shape[1]
        valid = torch.arange(T, device=device)[None] < lens[:, None]
        return pit_bce(out.logits.float(), Y[:, :T].to(device), valid)

    @torch.no_grad()
    def evaluate(self, model, device, autocast) -> dict:
        total = metrics.DiarizationErrors()
        frame_err = frame_n = 0.0
        for x, y in self.val_items:
            xt, mask = pad_batch([x])
            with autocast():
                out = model(xt.to(device), mask.to(device))
            p = torch.sigmoid(out.logits[0].float()).cpu().numpy()
            total += metrics.diarization_errors(labels_to_turns(y), activity_to_turns(p), collar=0.25,
                                                uem=(0.0, len(x) / SR))
            yy = np.concatenate([y, np.zeros((len(y), 2 - y.shape[1]))], axis=1)
            e = min(np.abs((p > 0.5) - yy).sum(), np.abs((p > 0.5) - yy[:, ::-1]).sum())
            frame_err, frame_n = frame_err + e, frame_n + yy.sum()
        return {"der": total.der, "missed": total.missed / max(total.total, 1e-9),
                "false_alarm": total.false_alarm / max(total.total, 1e-9),
                "confusion": total.confusion / max(total.total, 1e-9), "frame_error": frame_err / max(frame_n, 1)}


class EmbeddingTask(Task):
    """Angular prototypical loss (Chung et al. 2020, "In defence of metric learning for
    speaker recognition"): each batch holds n_spk identities x 2 crops; the first crop of
    every identity is a query, the second its prototype; logits are w * cos(query,
    prototype) + b over the batch's identities (w, b learned, init 10 and -5), loss cross
    entropy. It trains the cosine similarity used for verification directly and, unlike a
    softmax over all 1344 identities, converges in a few hundred steps."""

    metric = "eer"

    def __init__(self, *a):
        super().__init__(*a)
        self.w = torch.nn.Parameter(torch.tensor(10.0))
        self.b = torch.nn.Parameter(torch.tensor(-5.0))

    def extra_parameters(self):
        return [self.w, self.b]

    def crop(self, rng, spk: int, crop: float) -> tuple[np.ndarray, np.ndarray]:
        """One crop of identity spk: 1-2 of its utterances (half the time), or its own
        frames inside a two-speaker crop. Returns audio [N] and a frame mask [frames]."""
        if rng.random() < 0.5:
            idx = self.train.by_speaker[self.train.speakers[spk]]
            parts = [self.train.audio(idx[int(rng.integers(len(idx)))]) for _ in range(2)]
            a = np.concatenate([parts[0], silence(rng, 0.1, 0.5), parts[1]])
            n_s = min(len(a), int(crop * SR))
            st = int(rng.integers(0, len(a) - n_s + 1))
            x = add_noise(rng, a[st:st + n_s])
            return x, np.ones(n_frames(len(x)), bool)
        while True:
            other = int(rng.integers(len(self.train.speakers)))
            if C.Speaker.parse(self.train.speakers[other]).variant != C.Speaker.parse(self.train.speakers[spk]).variant:
                break
        for _ in range(20):
            x, y = conversation_crop(rng, self.train, [spk, other], max(crop, 2.5), n_turns=4)
            m = (y[:, 0] > 0) & (y[:, 1] == 0)
            if m.sum() >= 40:
                break
        return x, m

    def batch(self, rng):
        crop = rng.uniform(1.5, 4.0)
        n_spk = max(2, int(self.args.batch_seconds / (2 * crop)))
        spks = [int(i) for i in rng.choice(len(self.train.speakers), size=n_spk, replace=False)]
        xs, masks = [], []
        for k in range(2):
            for spk in spks:
                x, m = self.crop(rng, spk, crop)
                xs.append(x)
                masks.append(m)
        x, mask = pad_batch(xs)
        T = max(len(m) for m in masks)
        M = torch.zeros(len(masks), T)
        for i, m in enumerate(masks):
            M[i, :len(m)] = torch.from_numpy(m.astype(np.float32))
        return x, mask, M, n_spk, sum(len(a) for a in xs) / SR

    @staticmethod
    def masked_embeddings(model, x, mask, M):
        """x-vectors pooled over the frames selected by M [B, T] (the streaming engine's masked pooling)."""
        h, _ = model.frame_features(x, mask)  # [B, T', C] float32
        span = model.frame_span
        c = span // 2
        m = M[:, c:c + h.shape[1]].to(h.device)
        if mask is not None:
            lens = model.wavlm.frame_lengths(mask) - span
            m = m * (torch.arange(h.shape[1], device=h.device)[None] < lens[:, None])
        return model.masked_embeddings(h, m, eps=1e-6)

    def loss(self, model, batch, device):
        x, mask, M, n_spk, _ = batch
        e = F.normalize(self.masked_embeddings(model, x.to(device), mask.to(device), M).float(), dim=-1)
        query, proto = e[:n_spk], e[n_spk:]
        logits = self.w.clamp(min=1e-3) * (query @ proto.T) + self.b
        return F.cross_entropy(logits, torch.arange(n_spk, device=device))

    @torch.no_grad()
    def evaluate(self, model, device, autocast) -> dict:
        uset = self.val_unseen
        idx = [i for spk in uset.speakers for i in uset.by_speaker[spk][:4] if len(uset.by_speaker[spk]) > 1]
        idx = (idx or list(range(len(uset))))[:self.args.eval_items * 2]
        embs = []
        for k in range(0, len(idx), 16):
            x, mask = pad_batch([uset.audio(i) for i in idx[k:k + 16]])
            with autocast():
                out = model(x.to(device), mask.to(device))
            embs.append(F.normalize(out.embeddings.float(), dim=-1).cpu())
        E = torch.cat(embs).numpy()
        spk = np.array([uset.utts[i]["speaker"] for i in idx])
        iu = np.triu_indices(len(idx), 1)
        scores = (E @ E.T)[iu]
        labels = (spk[:, None] == spk[None, :])[iu].astype(int)
        if labels.min() == labels.max():  # too few utterances for both kinds of trial
            return {"eer": float("nan"), "eer_threshold": float("nan"), "trials": int(len(labels)),
                    "target_trials": int(labels.sum())}
        eer, thr = metrics.equal_error_rate(scores, labels)
        return {"eer": eer, "eer_threshold": thr, "trials": int(len(labels)), "target_trials": int(labels.sum())}


def lid_example(rng: np.random.Generator, uset: C.UtteranceSet, i: int, n: int) -> np.ndarray:
    """An n-sample crop (float32 [n]) of utterance i followed by more utterances of its
    identity (0.15-0.8 s pauses) after 0-0.5 s of silence, enough to fill n samples; the
    crop starts anywhere a full crop fits (zero-padded at the end when even three
    utterances are shorter)."""
    parts, total = [silence(rng, 0.0, 0.5)], 0
    same = uset.by_speaker[uset.utts[i]["speaker"]]
    for k in range(3):
        if k:
            parts.append(silence(rng, 0.15, 0.8))
            i = same[int(rng.integers(len(same)))]
        parts.append(uset.audio(i))
        total = sum(len(a) for a in parts)
        if total >= n:
            break
    x = np.concatenate(parts)
    if len(x) < n:
        x = np.concatenate([x, np.zeros(n - len(x), np.float32)])
    start = int(rng.integers(0, len(x) - n + 1))
    return add_noise(rng, x[start:start + n])


class LIDTask(Task):
    """Spoken-language identification: one class per corpus language."""

    metric = "error_unseen"

    def __init__(self, *a):
        super().__init__(*a)
        meta = C.load_meta(Path(self.args.corpus))
        if "languages" not in meta:
            raise SystemExit(f"{self.args.corpus} is not a language-identification corpus (corpus.py build-lid)")
        self.labels = tuple(meta["languages"])
        self.by_lang = {l: [i for i, u in enumerate(self.train.utts) if u["lang"] == l] for l in self.labels}

    def batch(self, rng):
        n = int(rng.uniform(*LID_CROP_SECONDS) * SR)
        count = max(1, int(self.args.batch_seconds * SR / n))
        xs, ys = [], []
        for _ in range(count):
            y = int(rng.integers(len(self.labels)))
            pool = self.by_lang[self.labels[y]]
            xs.append(lid_example(rng, self.train, pool[int(rng.integers(len(pool)))], n))
            ys.append(y)
        x = torch.from_numpy(np.stack([PREPROCESSOR.normalize(a) for a in xs]))
        return x, torch.tensor(ys), count * n / SR

    def loss(self, model, batch, device):
        x, y, _ = batch
        return F.cross_entropy(model(x.to(device)).logits.float(), y.to(device))

    @torch.no_grad()
    def predict(self, model, audios: list[np.ndarray], device, autocast) -> np.ndarray:
        """Class ids of whole utterances (padded batches of 16, masked pooling)."""
        out = []
        for k in range(0, len(audios), 16):
            x, mask = pad_batch(audios[k:k + 16])
            with autocast():
                logits = model(x.to(device), mask.to(device)).logits
            out.append(logits.float().argmax(-1).cpu().numpy())
        return np.concatenate(out)

    def evaluate(self, model, device, autocast) -> dict:
        res = {}
        for name, uset in (("seen", self.val), ("unseen", self.val_unseen)):
            idx = list(range(min(len(uset), self.args.eval_items)))
            truth = np.array([self.labels.index(uset.utts[i]["lang"]) for i in idx])
            pred = self.predict(model, [uset.audio(i) for i in idx], device, autocast)
            res[f"error_{name}"] = float(np.mean(pred != truth))
            if name == "unseen":  # the mistakes, "truth>prediction": count
                res["confused"] = dict(Counter(f"{self.labels[t]}>{self.labels[p]}"
                                               for t, p in zip(truth, pred) if t != p).most_common())
        return res


TASKS = {"ctc": CTCTask, "diarization": DiarizationTask, "embeddings": EmbeddingTask, "lid": LIDTask}


# ----------------------------------------------------------------------------- model init / io

def init_from(model: torch.nn.Module, source: Path, log) -> None:
    """Initialise model from a checkpoint folder: its backbone (`wavlm.*`), and its head too when
    both are the same architecture (e.g. a CTC model continued on a new corpus).

    Tensors are copied by name where the shapes match, so a shallower target keeps the source's
    first layers. A deeper pre-LN target (``do_stable_layer_norm``) gets its extra layers as
    identity blocks: their attention `out_proj` and feed-forward `output_dense` start at zero, so
    each residual branch adds nothing and the grown model computes exactly what the source did
    (the "function-preserving" growth of Net2Net, Chen et al. 2016) before training goes on.
    """
    src_model = load_pretrained(str(source), device="cpu", dtype=torch.float32).model
    src = src_model.state_dict()
    same_arch = type(src_model) is type(model)
    own = model.state_dict()
    copied = 0
    for k, v in src.items():
        if (k.startswith("wavlm.") or same_arch) and k in own and own[k].shape == v.shape:
            own[k] = v.float()
            copied += 1
    grown = list(range(src_model.config.num_hidden_layers, model.config.num_hidden_layers))
    if grown and model.config.do_stable_layer_norm:
        for i in grown:
            for name in ("attention.out_proj", "feed_forward.output_dense"):
                for part in ("weight", "bias"):
                    own[f"wavlm.encoder.layers.{i}.{name}.{part}"].zero_()
    model.load_state_dict(own)
    log({"init": str(source), "tensors_copied": copied, "head_copied": same_arch, "identity_layers": grown})


def export(src: Path, dst: Path, fp16: bool) -> None:
    """Rewrite a training checkpoint folder as a shipped one (optionally fp16 weights)."""
    pre = load_pretrained(str(src), device="cpu", dtype=torch.float32)
    save_pretrained(pre.model, dst, preprocessor=PREPROCESSOR, vocab=ctc_vocabulary() if pre.task == "ctc" else None)
    if fp16:  # save_pretrained writes float32; halve the file (loaders cast back to their dtype)
        from safetensors.torch import load_file, save_file
        path = Path(dst) / "model.safetensors"
        state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        save_file(state, str(path), metadata={"format": "pt"})
        cfg_path = Path(dst) / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["torch_dtype"] = "float16"
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def build_language_model(corpus: Path, out: Path, order: int, settings) -> None:
    """Write OUT/lm.arpa (interpolated Kneser-Ney over the training transcripts),
    OUT/unigrams.txt and OUT/attrs.json (``settings``, a ``wavlm_live.model.lm.BeamSettings``:
    pyctcdecode's four keys), and alphabet.json beside OUT when its parent has vocab.json."""
    from wavlm_live.model.lm import build_arpa, pyctcdecode_alphabet, write_language_model

    with open(corpus / "train" / "utts.jsonl", encoding="utf-8") as f:
        sentences = [json.loads(line)["norm"] for line in f]
    out.mkdir(parents=True, exist_ok=True)
    sizes = build_arpa(sentences, out / "lm.arpa", order=order)
    write_language_model(out, out / "lm.arpa", settings)
    if (out.parent / "vocab.json").is_file():
        alphabet = pyctcdecode_alphabet(CTCVocabulary.from_files(out.parent))
        (out.parent / "alphabet.json").write_text(json.dumps(alphabet, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"lm": str(out), "sentences": len(sentences), "ngrams": sizes, **settings.attrs()}), flush=True)


def save_best(model, task: str, folder: Path) -> None:
    save_pretrained(model, folder, preprocessor=PREPROCESSOR, vocab=ctc_vocabulary() if task == "ctc" else None)


# ----------------------------------------------------------------------------- loop

def progress(state: dict, args) -> float:
    """Fraction of the run done: steps over --steps, or training time over --minutes if further along."""
    p = state["step"] / args.steps
    if args.minutes:
        p = max(p, state["train_seconds"] / (60 * args.minutes))
    return min(1.0, p)


def lr_at(state: dict, args) -> float:
    """Linear warm-up over --warmup steps, then cosine decay to 5% of --lr at the end of the run."""
    if state["step"] < args.warmup:
        return args.lr * (state["step"] + 1) / args.warmup
    t0 = args.warmup / args.steps
    t = min(1.0, max(0.0, (progress(state, args) - t0) / max(1e-9, 1 - t0)))
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def train(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.jsonl", "a")

    def log(d):
        d = {"time": round(time.time(), 1), **d}
        line = json.dumps(d)
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    use_bf16 = args.precision == "bf16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    corpus = Path(args.corpus)
    train_set = C.UtteranceSet(corpus / "train")
    val, val_unseen = C.UtteranceSet(corpus / "val"), C.UtteranceSet(corpus / "val_unseen")
    torch.manual_seed(args.seed)
    task = TASKS[args.task](args, train_set, val, val_unseen)
    model = MODEL_CLASS[args.task](make_config(args.task, args.layers, getattr(task, "labels", None)))
    if args.task == "embeddings":
        with torch.no_grad():
            model.classifier.weight.copy_(torch.eye(model.classifier.weight.shape[0]))
            model.classifier.bias.zero_()
    model.to(device)
    params = list(model.parameters()) + task.extra_parameters()
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng = np.random.default_rng(args.seed)
    state = {"step": 0, "best": None, "train_seconds": 0.0, "audio_seconds": 0.0}
    state_path = out / "state.pt"
    if state_path.exists():
        ck = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        for p, v in zip(task.extra_parameters(), ck.get("extra", [])):
            p.data.copy_(v)
        opt.load_state_dict(ck["opt"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        state = ck["state"]
        log({"resumed": str(state_path), "step": state["step"]})
    elif args.init:
        init_from(model, Path(args.init), log)
    n_params = sum(p.numel() for p in model.parameters())
    log({"task": args.task, "params": n_params, "device": str(device), "bf16": use_bf16, "threads": args.threads,
         "train_utts": len(train_set), "train_hours": round(train_set.seconds / 3600, 2),
         "identities": len(train_set.speakers), "args": {k: str(v) for k, v in vars(args).items()}})

    def checkpoint():
        torch.save({"model": model.state_dict(), "extra": [p.data for p in task.extra_parameters()],
                    "opt": opt.state_dict(), "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "state": state}, state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)

    def evaluate():
        model.eval()
        t = time.time()
        res = task.evaluate(model, device, autocast)
        model.train()
        score = res[task.metric]
        improved = state["best"] is None or not state["best"] == state["best"] or score <= state["best"]
        if improved:
            state["best"] = score
            save_best(model, args.task, out / "best")
        log({"eval": state["step"], **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()},
             "best": round(state["best"], 4), "improved": improved, "eval_s": round(time.time() - t, 1),
             "train_min": round(state["train_seconds"] / 60, 1)})
        checkpoint()

    model.train()
    losses, audio_acc, t_log = [], 0.0, time.time()
    while progress(state, args) < 1.0:
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(state, args)
        batch = task.batch(rng)
        with autocast():
            loss = task.loss(model, batch, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state["step"] += 1
        state["train_seconds"] += time.time() - t0
        state["audio_seconds"] += batch[-1]
        audio_acc += batch[-1]
        losses.append(loss.item())
        if state["step"] % args.log_every == 0:
            dt = time.time() - t_log
            log({"step": state["step"], "loss": round(float(np.mean(losses)), 4), "lr": round(lr_at(state, args), 6),
                 "grad_norm": round(float(gn), 2), "audio_s_per_s": round(audio_acc / dt, 1),
                 "epochs": round(state["audio_seconds"] / train_set.seconds, 2)})
            losses, audio_acc, t_log = [], 0.0, time.time()
        if state["step"] % args.eval_every == 0:
            evaluate()
    if state["step"] % args.eval_every:
        evaluate()
    log({"done": state["step"], "best": state["best"], "train_min": round(state["train_seconds"] / 60, 1)})
    logf.close()
    return state


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="task", required=True)
    for name, lr, warm in (("ctc", 1.5e-3, 300), ("diarization", 5e-4, 150), ("embeddings", 1e-3, 150),
                           ("lid", 5e-4, 100)):
        t = sub.add_parser(name)
        t.add_argument("--corpus", type=Path, default=Path("corpus/lid" if name == "lid" else "corpus/demo"))
        t.add_argument("--out", type=Path, required=True)
        t.add_argument("--init", type=Path, default=DEMO_CAPTIONS if name == "lid" else None,
                       help="checkpoint folder whose backbone initialises this model"
                            + (" (default: the bundled captions model)" if name == "lid" else ""))
        t.add_argument("--steps", type=int, default=3000, help="length of the LR schedule")
        t.add_argument("--minutes", type=float, default=0,
                       help="training-time budget: the run (and its LR schedule) ends after --steps or this many "
                            "minutes of training, whichever comes first; 0 = steps only")
        t.add_argument("--lr", type=float, default=lr)
        t.add_argument("--warmup", type=int, default=warm)
        t.add_argument("--batch-seconds", type=float, default=32.0, help="audio per batch, seconds")
        t.add_argument("--layers", type=int, default=None, help=f"transformer layers (default {LAYERS[name]})")
        t.add_argument("--eval-every", type=int, default=250)
        t.add_argument("--eval-items", type=int, default=200)
        t.add_argument("--log-every", type=int, default=25)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--threads", type=int, default=2)
        t.add_argument("--device", choices=("auto", "cpu"), default="auto")
        t.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    e = sub.add_parser("export")
    e.add_argument("src", type=Path)
    e.add_argument("dst", type=Path)
    e.add_argument("--fp16", action="store_true")
    m = sub.add_parser("lm")
    m.add_argument("--corpus", type=Path, default=Path("corpus/demo"))
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--order", type=int, default=2)
    m.add_argument("--alpha", type=float, default=0.8, help="LM weight (natural-log word probabilities)")
    m.add_argument("--beta", type=float, default=3.0, help="bonus per word")
    m.add_argument("--unk-score-offset", type=float, default=-10.0, help="added once per unknown word")
    m.add_argument("--score-boundary", action=argparse.BooleanOptionalAction, default=SCORE_BOUNDARY,
                   help="score <s> before the first word and </s> after the last")
    args = p.parse_args(argv)
    if args.task == "lm":
        from wavlm_live.model.lm import BeamSettings
        settings = BeamSettings(alpha=args.alpha, beta=args.beta, unk_score_offset=args.unk_score_offset,
                                score_boundary=args.score_boundary)
        build_language_model(args.corpus, args.out, args.order, settings)
        return 0
    if args.task == "export":
        export(args.src, args.dst, args.fp16)
        return 0
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
