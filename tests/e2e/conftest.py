"""Checkpoints in Hub layouts of other languages whose captions of a LibriVox clip are known.

A random-weight model says nothing meaningful, so an end-to-end test could not tell a
right Cyrillic or Chinese caption from a wrong one. Here a random-weight Wav2Vec2 model in
the XLS-R Russian layout (and one in the XLSR-53 Chinese character layout) gets a CTC head
fitted by ridge regression to the backbone's own hidden states of one LibriVox clip, frame
by frame as the streaming engine computes them (each settled frame from the window that
settles it, normalised per window): the engine's greedy captions of that clip are then a
chosen sentence. Everything else (loading, windows, stitching, the vocabulary of the
language, writers, dashboard) runs unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

DATA = Path(__file__).parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0930.wav"  # 3.29 s, 164 frames
SENTENCES = {"xls-r-300m-ru": ("привет мир", 3),
             "xlsr-53-zh-cn": ("我们在中国的大学上学时和你说过这个国家的人他们也是我的好人", 2)}
"""Layout -> (the captions the fitted model gives for :data:`CLIP`, frames per character)."""
WIDE = {"hidden_size": 256, "intermediate_size": 256}  # more dimensions than the clip has frames


def frame_labels(vocab, text: str, n_frames: int, per_char: int = 3, start: int = 20) -> np.ndarray:
    """CTC frame ids spelling ``text`` from frame ``start``: each character ``per_char`` frames
    then ``per_char - 1`` blanks, the word delimiter (when the vocabulary has one) 2 frames
    between words."""
    ids = [vocab.blank_id] * start
    delim = vocab.tokens.index(vocab.word_delimiter_token) if vocab.word_delimiter_token in vocab.tokens else None
    for i, word in enumerate(text.split()):
        if i and delim is not None:
            ids += [delim] * 2
        for ch in word:
            ids += [vocab.tokens.index(ch)] * per_char + [vocab.blank_id] * (per_char - 1)
    assert len(ids) <= n_frames
    return np.array(ids + [vocab.blank_id] * (n_frames - len(ids)))


def fit_head(folder: Path, text: str, per_char: int = 3) -> None:
    """Replace ``lm_head`` in ``folder/model.safetensors`` so that the engine's settled logits
    of :data:`CLIP` (4 s windows, 1 s hop) decode to ``text``."""
    from safetensors.torch import load_file, save_file

    from wavlm_live.engine.engine import EngineConfig
    from wavlm_live.engine.tasks import CTCRunner
    from wavlm_live.engine.windows import WindowPlan
    from wavlm_live.model import load_pretrained

    audio, rate = sf.read(CLIP, dtype="float32")
    assert rate == 16000
    runner = CTCRunner(load_pretrained(folder))
    config = EngineConfig(realtime=False)
    rows = []
    for w in WindowPlan(config.window, config.hop).windows_for(len(audio)):
        with torch.inference_mode():
            h = runner.model.backbone(runner._input(audio[w.start:w.end])).last_hidden_state[0].double()
        rows.append(h[w.keep_start - w.frame_start:w.keep_end - w.frame_start])
    hidden = torch.cat(rows)  # [frames, H]: each frame as the window that settles it saw it
    targets = frame_labels(runner.pretrained.vocab, text, len(hidden), per_char)
    x = torch.cat([hidden, torch.ones(len(hidden), 1, dtype=torch.float64)], 1)
    y = torch.full((len(hidden), runner.pretrained.config.vocab_size), -8.0, dtype=torch.float64)
    y[torch.arange(len(hidden)), torch.from_numpy(targets)] = 8.0
    solution = torch.linalg.solve(x.T @ x + 1e-6 * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)
    assert torch.equal((x @ solution).argmax(1), torch.from_numpy(targets)), "the head does not fit the clip"
    path = folder / "model.safetensors"
    state = load_file(str(path))
    state["lm_head.weight"] = solution[:-1].T.float().contiguous()
    state["lm_head.bias"] = solution[-1].float().contiguous()
    save_file(state, str(path), metadata={"format": "pt"})


@pytest.fixture(scope="session")
def language_checkpoints(tmp_path_factory):
    """``{layout: (folder, sentence)}`` for the Russian XLS-R and Chinese XLSR-53 layouts."""
    from tests.model.hub_layouts import write_checkpoint

    out = {}
    for name, (sentence, per_char) in SENTENCES.items():
        folder = tmp_path_factory.mktemp(name)
        write_checkpoint(folder, name, seed=5, sizes=WIDE)
        fit_head(folder, sentence, per_char)
        out[name] = (folder, sentence)
    return out
