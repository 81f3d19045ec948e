"""Language-model engines for the CTC beam search: load time, memory and search time, and
accuracy against pyctcdecode.

``speed``: builds a large word 5-gram ARPA file (>= 100 MB) from a text corpus on this
machine (the glosses of WordNet 3.0, Debian package ``wordnet-base``, upper-cased to the
LibriSpeech letters) with KenLM's ``lmplz``, converts it with ``build_binary``, and loads
it three ways, each in a fresh process: the KenLM binary and the ARPA file through
``wavlm_live.model.lm.KenLM``, and the ARPA file into Python dictionaries (the dict LM this
project used before KenLM, kept here only for the comparison). For each it prints the load
time, the resident memory it added, and the beam-search time per audio second on the demo
captions model's logits of the bundled conversation (final-caption-sized pieces of 3 s,
beam 24). With ``--pyctcdecode-python`` (an interpreter of a separate virtual environment
with pyctcdecode, kenlm and numpy < 2: pyctcdecode is never a dependency of this project)
it times pyctcdecode on the same pieces with the binary too.

``accuracy``: CER / WER of greedy decoding, this project's beam search (with and without
the unknown-word fix, with and without ``score_boundary``) and optionally pyctcdecode, on
the demo captions model's offline logits of held-out validation utterances of a corpus
built by ``scripts/corpus.py build`` (the table in docs/models.md).

KenLM's tools are not a Python package: build ``lmplz`` and ``build_binary`` from the kenlm
sdist as tests/data/README.md shows and pass their folder with ``--kenlm-bin``.

Usage:
  python bench/lm.py speed --kenlm-bin ~/kenlm-0.3.0/build/bin [--order 5] [--work /tmp/lmbench]
  python bench/lm.py accuracy --corpus corpus/demo [--utterances 120] [--pyctcdecode-python VENV/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO = REPO / "wavlm_live" / "data" / "demo"
PIECE_FRAMES = 150  # 3 s: a final caption segment's size


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the dict LM this project used before KenLM (wavlm_live/model/lm.py at c88842d), with the
# -- state interface of wavlm_live.model.lm.KenLM so that the same beam search can use it

class DictLM:
    """An ARPA file in a Python dict ``{(w1, ..., wn): (log10 prob, log10 backoff)}``, words
    case-folded; states are the last ``order - 1`` words."""

    def __init__(self, path: Path):
        self._ngrams: dict[tuple[str, ...], tuple[float, float]] = {}
        order = 0
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                    continue
                if line.startswith("\\") and line.endswith("-grams:"):
                    order = int(line[1:line.index("-")])
                    continue
                parts = line.split()
                backoff = float(parts[order + 1]) if len(parts) == order + 2 else 0.0
                self._ngrams[tuple(w.casefold() for w in parts[1:order + 1])] = (float(parts[0]), backoff)
        self.order = max(len(k) for k in self._ngrams)
        vocab = {k[0] for k in self._ngrams if len(k) == 1} - {"<s>", "</s>", "<unk>"}
        self._prefixes = frozenset(w[:i] for w in vocab for i in range(1, len(w) + 1))
        self._vocab = frozenset(vocab)
        self._unk = self._ngrams.get(("<unk>",), (-100.0, 0.0))[0]

    def describe(self) -> str:
        return f"{self.order}-gram dict LM"

    def start(self, context=(), sentence_start=True):
        return ("<s>",) if sentence_start and not context else tuple(w.casefold() for w in context)[-(self.order - 1):]

    def _log10(self, history, word):
        if (word,) not in self._ngrams:
            return self._unk
        backoff = 0.0
        for i in range(len(history) + 1):
            ctx = history[i:]
            entry = self._ngrams.get(ctx + (word,))
            if entry is not None:
                return backoff + entry[0]
            ctx_entry = self._ngrams.get(ctx)
            if ctx_entry is not None:
                backoff += ctx_entry[1]
        return self._unk

    def score(self, state, word):
        word = word.casefold()
        return self._log10(state, word), (state + (word,))[-(self.order - 1):]

    def end(self, state):
        return self._log10(state, "</s>")

    def knows(self, word):
        return word.casefold() in self._vocab

    def is_prefix(self, partial):
        return partial.casefold() in self._prefixes


# -- speed ---------------------------------------------------------------------------

def wordnet_corpus(out: Path) -> int:
    """WordNet 3.0 glosses (definitions and examples), one phrase a line, LibriSpeech letters."""
    words = 0
    with open(out, "w", encoding="utf-8") as f:
        for pos in ("noun", "verb", "adj", "adv"):
            for line in open(f"/usr/share/wordnet/data.{pos}", encoding="latin-1"):
                if line.startswith("  ") or "|" not in line:
                    continue
                for part in re.split(r'[;"]', line.split("|", 1)[1]):
                    ws = re.sub(r"[^A-Za-z' ]+", " ", part).upper().split()
                    if len(ws) >= 3:
                        f.write(" ".join(ws) + "\n")
                        words += len(ws)
    return words


def demo_logits(out: Path) -> float:
    """The demo captions model's logits of the bundled conversation; returns its seconds."""
    import soundfile as sf
    import torch

    from wavlm_live.model import load_pretrained

    pre = load_pretrained(DEMO / "captions")
    audio, rate = sf.read(DEMO / "conversation.flac", dtype="float32")
    assert rate == 16000
    x = pre.preprocessor.normalize(torch.from_numpy(audio)[None])
    with torch.inference_mode():
        logits = pre.model(x).logits[0].float().numpy()
    np.save(out, logits)
    return len(audio) / rate


def child(engine: str, path: str, logits_path: str) -> None:
    """Load one engine, search the logits in 3 s pieces; print a JSON line."""
    from wavlm_live.model import CTCVocabulary
    from wavlm_live.model.lm import BeamSettings, CTCBeamDecoder, KenLM, load_language_model

    logits = np.load(logits_path)
    vocab = CTCVocabulary.from_files(DEMO / "captions")
    before = rss_mb()
    t = time.perf_counter()
    if engine == "dict":
        lm = DictLM(Path(path))
    elif Path(path).is_dir():  # a Hub-layout folder: attrs.json, unigrams.txt, the model
        lm = load_language_model(path)[0]
    else:
        lm = KenLM(path)
    load = time.perf_counter() - t
    loaded = rss_mb()
    beam = CTCBeamDecoder(vocab, lm, BeamSettings(alpha=0.8, beta=3.0))
    t = time.perf_counter()
    words = 0
    for i in range(0, len(logits), PIECE_FRAMES):
        words += len(beam.decode(logits[i:i + PIECE_FRAMES]).words)
    search = time.perf_counter() - t
    print(json.dumps({"engine": engine, "load_s": load, "rss_load_mb": loaded - before,
                      "rss_total_mb": rss_mb(), "search_s": search, "audio_s": len(logits) * 0.02,
                      "words": words}))


PYCTCDECODE_CHILD = r"""
import json, sys, time, resource
import numpy as np
import kenlm
from pyctcdecode import Alphabet, BeamSearchDecoderCTC, LanguageModel
alphabet_path, model_path, unigrams_path, logits_path = sys.argv[1:5]
logits = np.load(logits_path)
t = time.perf_counter()
model = kenlm.Model(model_path)
lm = LanguageModel(model, open(unigrams_path).read().split(), alpha=0.8, beta=3.0)
load = time.perf_counter() - t
decoder = BeamSearchDecoderCTC(Alphabet.loads(open(alphabet_path).read()), lm)
t = time.perf_counter()
for i in range(0, len(logits), 150):
    x = logits[i:i + 150]
    x = x - x.max(1, keepdims=True)
    decoder.decode(x - np.log(np.exp(x).sum(1, keepdims=True)), beam_width=24, token_min_logp=-8.0)
print(json.dumps({"engine": "pyctcdecode (binary)", "load_s": load, "search_s": time.perf_counter() - t,
                  "audio_s": len(logits) * 0.02,
                  "rss_total_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def speed(args: argparse.Namespace) -> None:
    from wavlm_live.model.lm import BeamSettings, read_arpa_unigrams, write_language_model

    tools = Path(args.kenlm_bin).expanduser()
    for tool in ("lmplz", "build_binary"):
        if not (tools / tool).is_file():
            sys.exit(f"bench/lm.py: {tools / tool} not found; build KenLM's tools as tests/data/README.md shows")
    work = Path(args.work or tempfile.mkdtemp(prefix="lmbench-"))
    work.mkdir(parents=True, exist_ok=True)
    text, arpa, binary = work / "wordnet.txt", work / f"wordnet{args.order}.arpa", work / f"wordnet{args.order}.bin"
    words = wordnet_corpus(text)
    if not arpa.is_file():
        with open(text, "rb") as src, open(arpa, "wb") as dst:
            subprocess.run([str(tools / "lmplz"), "-o", str(args.order), "--discount_fallback", "-S", "20%",
                            "-T", str(work)], stdin=src, stdout=dst, stderr=subprocess.DEVNULL, check=True)
    if not binary.is_file():
        subprocess.run([str(tools / "build_binary"), str(arpa), str(binary)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    with open(arpa, encoding="utf-8") as f:
        header = [next(f) for _ in range(args.order + 3)]
    ngrams = sum(int(h.split("=")[1]) for h in header if h.startswith("ngram "))
    logits_path = work / "conversation_logits.npy"
    seconds = demo_logits(logits_path)
    print(f"corpus: WordNet 3.0 glosses, {words} words; {args.order}-gram ARPA {arpa.stat().st_size / 1e6:.1f} MB "
          f"({ngrams} n-grams), KenLM binary (probing) {binary.stat().st_size / 1e6:.1f} MB; "
          f"logits: the demo conversation, {seconds:.1f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
    hub = work / "language_model"  # the binary as a Hub checkpoint ships it, with unigrams.txt
    if not (hub / binary.name).is_file():
        write_language_model(hub, binary, BeamSettings(alpha=0.8, beta=3.0), unigrams=read_arpa_unigrams(arpa))
    rows = []
    for engine, path in (("kenlm-binary", hub), ("kenlm-arpa", arpa), ("dict", arpa)):
        out = subprocess.run([sys.executable, __file__, "_child", engine, str(path), str(logits_path)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.pyctcdecode_python:
        out = subprocess.run([args.pyctcdecode_python, "-c", PYCTCDECODE_CHILD, str(DEMO / "captions" / "alphabet.json"),
                              str(hub / binary.name), str(hub / "unigrams.txt"), str(logits_path)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"\n{'engine':24} {'load s':>8} {'RSS MB':>9} {'load vs binary':>15} {'search ms / audio s':>20}")
    for r in rows:
        print(f"{r['engine']:24} {r['load_s']:8.2f} {r.get('rss_load_mb', r['rss_total_mb']):9.0f} "
              f"{r['load_s'] / base['load_s']:14.1f}x {1000 * r['search_s'] / r['audio_s']:20.1f}")
    print(f"(kenlm-binary: a Hub-layout folder with unigrams.txt; RSS: memory the load added (the binary is "
          f"memory-mapped: its pages are shared page cache); pyctcdecode: the process's peak RSS. Load average now "
          f"{os.getloadavg()[0]:.2f})")


# -- accuracy ------------------------------------------------------------------------

PYCTCDECODE_ACCURACY = r"""
import json, re, sys, time
import numpy as np
from pyctcdecode import Alphabet, BeamSearchDecoderCTC, LanguageModel
alphabet_path, lm_dir, logits_path = sys.argv[1:4]
data = np.load(logits_path)
out, times = {}, {}
for boundary in (True, False):
    lm = LanguageModel.load_from_dir(lm_dir)
    lm.score_boundary = boundary
    decoder = BeamSearchDecoderCTC(Alphabet.loads(open(alphabet_path).read()), lm)
    for beam in (24, 100):
        hyps = {}
        t = time.perf_counter()
        for k in data.files:
            x = data[k] - data[k].max(1, keepdims=True)
            text = decoder.decode(x - np.log(np.exp(x).sum(1, keepdims=True)), beam_width=beam, token_min_logp=-8.0)
            hyps[k] = re.sub(" +", " ", text).strip()
        out[f"pyctcdecode, beam {beam}, score_boundary {boundary}"] = hyps
        times[f"pyctcdecode, beam {beam}, score_boundary {boundary}"] = time.perf_counter() - t
print(json.dumps({"hyps": out, "times": times}))
"""


def accuracy(args: argparse.Namespace) -> None:
    import torch

    from wavlm_live import metrics
    from wavlm_live.model import CTCDecoder, load_pretrained
    from wavlm_live.model.lm import BeamSettings, CTCBeamDecoder, load_language_model

    pre = load_pretrained(DEMO / "captions")
    logits, refs = {}, {}
    for split in ("val", "val_unseen"):
        audio = np.load(Path(args.corpus) / split / "audio.npy", mmap_mode="r")
        utts = [json.loads(line) for line in open(Path(args.corpus) / split / "utts.jsonl")][:args.utterances]
        for i, u in enumerate(utts):
            x = torch.from_numpy(audio[u["offset"]:u["offset"] + u["length"]].astype(np.float32) / 32768)[None]
            with torch.inference_mode():
                logits[f"{split}/{i}"] = pre.model(pre.preprocessor.normalize(x)).logits[0].float().numpy()
            refs[f"{split}/{i}"] = u["norm"]
    lm, settings = load_language_model(DEMO / "captions" / "language_model")

    class WithoutFix(CTCBeamDecoder):
        """The search before the fix: a closed word that is a known word's prefix gets no offset."""

        def _close(self, state, word, penalised):
            return super()._close(state, word, True)

    hyps: dict[str, dict[str, str]] = {}
    timing: dict[str, float] = {}
    greedy = CTCDecoder(pre.vocab)
    decoders = {"greedy": greedy.decode}
    for boundary in (True, False):
        s = BeamSettings(**{**settings.__dict__, "score_boundary": boundary})
        decoders[f"ours, score_boundary {boundary}"] = CTCBeamDecoder(pre.vocab, lm, s).decode
        decoders[f"ours without the unknown-word fix, score_boundary {boundary}"] = WithoutFix(pre.vocab, lm, s).decode
    for name, decode in decoders.items():
        t = time.perf_counter()
        hyps[name] = {k: decode(x).text for k, x in logits.items()}
        timing[name] = time.perf_counter() - t
    if args.pyctcdecode_python:
        with tempfile.NamedTemporaryFile(suffix=".npz") as f:
            np.savez(f.name, **logits)
            out = subprocess.run([args.pyctcdecode_python, "-c", PYCTCDECODE_ACCURACY,
                                  str(DEMO / "captions" / "alphabet.json"), str(DEMO / "captions" / "language_model"),
                                  f.name], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            hyps.update(result["hyps"])
            timing.update(result["times"])
    seconds = sum(len(x) for x in logits.values()) * 0.02
    print(f"{len(logits)} utterances ({seconds / 60:.1f} min of audio); LM settings {settings.attrs()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'decoder':62} {'val CER / WER':>15} {'val_unseen CER / WER':>22} {'time s':>7}")
    for name, h in hyps.items():
        cells = []
        for split in ("val", "val_unseen"):
            ks = [k for k in logits if k.startswith(split + "/")]
            r, p = [refs[k] for k in ks], [h[k] for k in ks]
            cells.append(f"{100 * metrics.cer(r, p):5.1f} / {100 * metrics.wer(r, p):5.1f}")
        t = f"{timing[name]:7.1f}" if name in timing else "      -"
        print(f"{name:62} {cells[0]:>15} {cells[1]:>22} {t}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        child(*argv[1:4])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--kenlm-bin", required=True, help="folder with KenLM's lmplz and build_binary")
    s.add_argument("--order", type=int, default=5)
    s.add_argument("--work", default=None, help="folder for the corpus and models (default: a new temp folder)")
    s.add_argument("--pyctcdecode-python", default=None)
    a = sub.add_parser("accuracy")
    a.add_argument("--corpus", required=True, help="a scripts/corpus.py build folder (its val and val_unseen)")
    a.add_argument("--utterances", type=int, default=120, help="per split")
    a.add_argument("--pyctcdecode-python", default=None)
    args = p.parse_args(argv)
    speed(args) if args.cmd == "speed" else accuracy(args)


if __name__ == "__main__":
    main()
