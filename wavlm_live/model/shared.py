"""Identical feature encoders shared across loaded models and computed once per window.

Fine-tuning WavLM-family checkpoints usually freezes the convolutional feature encoder
(transformers' ``freeze_feature_encoder``, on in its speech fine-tuning examples), so the
captions, diarization and x-vector checkpoints of one base model may hold the very same
conv weights. :func:`share_feature_encoder` detects that by content (a BLAKE2b hash of the
encoder's tensors, their names, shapes and dtypes, on the same device) when a model is
loaded and makes every such model hold one encoder module, memoised: it returns its
previous output again when it is called on an equal input: the x-vector pass on a
diarization window (the same samples, normalised the same way) then skips the conv stack.
The reuse is exact: the output is the one computed for that very input (also with
group-norm encoders, which normalise over the whole window: same window, same
statistics). Inputs of other windows only cost one comparison of their samples.
"""

from __future__ import annotations

import hashlib
import threading
import weakref

import torch
from torch import nn

_REGISTRY: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def content_key(module: nn.Module) -> str:
    """BLAKE2b hex digest of a module's class, parameters and buffers (names, dtypes,
    shapes, bytes) and their device: equal for modules that compute the same function."""
    h = hashlib.blake2b(digest_size=20)
    h.update(type(module).__name__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{t.device}".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Memo:
    """The memo of a shared feature encoder (its ``shared_memo`` attribute).

    Attributes:
        key: the encoder's :func:`content_key`.
        calls, hits: calls so far and how many returned the previous output.
        last: ``(input, output)`` of the latest call, replaced atomically.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.calls = 0
        self.hits = 0
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None


def _memoise(encoder: nn.Module, key: str) -> Memo:
    """Make ``encoder(x)`` return its previous output object when ``x`` equals the previous
    input (same shape, dtype, device and values) and both calls ran without autograd
    (and alike in or out of ``torch.inference_mode``); callers must not modify the output
    in place (the backbone's feature projection does not). The parameters and state-dict
    names stay as they are. Thread-safe: the memo is one tuple, read and replaced whole."""
    memo = Memo(key)
    compute = encoder.forward

    def forward(input_values: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training or autograd: no memo, no inference tensors handed out
            return compute(input_values)
        memo.calls += 1
        last = memo.last
        if (last is not None and last[1].is_inference() == torch.is_inference_mode_enabled() and last[0].shape == input_values.shape and last[0].dtype == input_values.dtype
                and last[0].device == input_values.device and torch.equal(last[0], input_values)):
            memo.hits += 1
            return last[1]
        out = compute(input_values)
        memo.last = (input_values, out)
        return out

    encoder.forward = forward  # an instance attribute: nn.Module.__call__ runs it
    encoder.shared_memo = memo
    return memo


def share_feature_encoder(model: nn.Module) -> Memo | None:
    """Give ``model`` (a task model with a ``backbone``) the very feature-encoder module
    of a model loaded before whose encoder is identical (:func:`content_key`), or
    register its own (memoised) for later models. Call it on the final model (after
    its dtype, device and fast path are set).

    Returns:
        The :class:`Memo` of the encoder the model now holds, or ``None`` when the model
        has no ``backbone.feature_extractor``.
    """
    backbone = getattr(model, "backbone", None)
    encoder = getattr(backbone, "feature_extractor", None)
    if encoder is None:
        return None
    if hasattr(encoder, "shared_memo"):
        return encoder.shared_memo
    key = content_key(encoder)
    with _LOCK:
        shared = _REGISTRY.get(key)
        if shared is None:
            _memoise(encoder, key)
            _REGISTRY[key] = shared = encoder
    backbone.feature_extractor = shared
    return shared.shared_memo
