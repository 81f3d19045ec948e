"""WavLM, Wav2Vec2 (XLS-R) and HuBERT in plain PyTorch: the backbone, the four task heads
(CTC, frame classification, x-vector, sequence classification), Hugging Face checkpoint loading and saving, input
normalisation and CTC decoding (vocabularies of any language); ``lm`` adds the KenLM beam
search.

transformers is only a test oracle; nothing here imports it. See ``docs/models.md``.

The modules are reference PyTorch; the CPU fast path (oneDNN fused kernels) is one opt-in
call, :func:`accelerate` (``fast.py``), which ``load_pretrained`` makes for CPU models unless
``fast=False``.

Typical use::

    from wavlm_live.model import load_pretrained
    pre = load_pretrained("patrickvonplaten/wavlm-libri-clean-100h-base-plus", dtype="auto")
    x = pre.preprocessor.normalize(samples[None])          # [1, N] float32, 16 kHz
    with torch.inference_mode():
        logits = pre.model(x.to(pre.device, pre.dtype)).logits[0]   # [T, vocab]
    transcript = pre.decoder.decode(logits)
"""

from .backbone import WavLMModel, WavLMOutput
from .checkpoint import (ModelLoadError, Pretrained, load_pretrained, resolve_device, resolve_dtype,
                         save_pretrained)
from .config import PreprocessorConfig, WavLMConfig, frames_for_samples
from .ctc import CharOffset, CTCDecoder, CTCVocabulary, Transcript, WordOffset
from .fast import accelerate
from .heads import WavLMForAudioFrameClassification, WavLMForCTC, WavLMForSequenceClassification, WavLMForXVector

__all__ = [
    "CTCDecoder",
    "CTCVocabulary",
    "CharOffset",
    "ModelLoadError",
    "PreprocessorConfig",
    "Pretrained",
    "Transcript",
    "WavLMConfig",
    "WavLMForAudioFrameClassification",
    "WavLMForCTC",
    "WavLMForSequenceClassification",
    "WavLMForXVector",
    "WavLMModel",
    "WavLMOutput",
    "WordOffset",
    "accelerate",
    "frames_for_samples",
    "load_pretrained",
    "resolve_device",
    "resolve_dtype",
    "save_pretrained",
]
