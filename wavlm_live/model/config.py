"""Configuration of WavLM, Wav2Vec2 (XLS-R) and HuBERT checkpoints: the model's
``config.json`` and the feature extractor's ``preprocessor_config.json``, as frozen
dataclasses.

Field names and defaults follow transformers' ``WavLMConfig``, ``Wav2Vec2Config``,
``HubertConfig`` and ``Wav2Vec2FeatureExtractor`` (transformers 5.24,
``configuration_wavlm.py``, ``configuration_wav2vec2.py``, ``configuration_hubert.py``,
``feature_extraction_wav2vec2.py``), so a checkpoint's JSON reads unchanged and
``to_dict()`` writes JSON that transformers loads. The three families share every default
that matters here; ``model_type`` says which one a config is. Only fields that change the
architecture or the outputs are kept; training-only keys (dropouts, SpecAugment,
quantizer sizes, ...) are accepted and ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavlm_live.timegrid import SAMPLE_RATE, frames_for_samples  # noqa: F401 - re-exported

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu", "swish")
"""Activation names accepted for ``hidden_act`` / ``feat_extract_activation``; "gelu" is the
exact (erf) GELU as in transformers' ``ACT2FN``."""

FAMILIES = {"wavlm": "WavLM", "wav2vec2": "Wav2Vec2", "hubert": "HuBERT"}
"""Supported ``model_type`` values and their display names. XLS-R and XLSR-53 checkpoints
are ``wav2vec2``."""

ARCH_PREFIX = {"wavlm": "WavLM", "wav2vec2": "Wav2Vec2", "hubert": "Hubert"}
"""The class-name prefix of each family's ``architectures`` entries (``Wav2Vec2ForCTC``)."""

# config fields that name a feature this package does not implement: (field, value that
# is fine, what the field adds). Anything else set there is refused with one sentence.
_UNSUPPORTED = (
    ("add_adapter", False, "adapter layers after the encoder are not supported"),
    ("adapter_attn_dim", None, "per-layer attention adapters (MMS checkpoints) are not supported"),
    ("conv_pos_batch_norm", False, "a BatchNorm positional convolution (instead of the weight-normed one) "
                                   "is not supported"),
)

_TUPLE_FIELDS = ("conv_dim", "conv_stride", "conv_kernel", "tdnn_dim", "tdnn_kernel", "tdnn_dilation")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bad(name: str, value: Any, what: str) -> ValueError:
    return ValueError(f"config field {name!r} must be {what}, got {value!r}")



def read_json(path: str | Path) -> Any:
    """The JSON value in the UTF-8 file ``path``; raises ``OSError`` if unreadable and
    ``ValueError`` naming the file if it is not valid JSON."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None

@dataclass(frozen=True)
class WavLMConfig:
    """Architecture of a WavLM, Wav2Vec2 (XLS-R) or HuBERT checkpoint (the fields of its
    ``config.json`` that matter).

    Build it with :meth:`from_dict` / :meth:`from_json` (validated) or directly with keyword
    arguments (validated too). Defaults are those of transformers' ``WavLMConfig``
    (wavlm-base size), which Wav2Vec2 and HuBERT share. Raises ``ValueError`` naming the
    field for an unknown or inconsistent value.
    """

    model_type: str = "wavlm"  # family: "wavlm" (gated relative position bias), "wav2vec2" or "hubert" (plain attention)
    hidden_size: int = 768  # transformer width H
    num_hidden_layers: int = 12  # transformer layers
    num_attention_heads: int = 12  # heads; H must be divisible by it
    intermediate_size: int = 3072  # feed-forward width
    hidden_act: str = "gelu"  # feed-forward activation
    layer_norm_eps: float = 1e-5  # eps of the encoder / projection LayerNorms
    feat_extract_norm: str = "group"  # "group": GroupNorm on conv 0 (base); "layer": LayerNorm on every conv (large)
    feat_extract_activation: str = "gelu"  # activation of the conv feature encoder
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)  # channels of each conv layer
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)  # strides (samples, then frames)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)  # kernel sizes
    conv_bias: bool = False  # conv layers have a bias
    num_conv_pos_embeddings: int = 128  # kernel of the positional conv (frames)
    num_conv_pos_embedding_groups: int = 16  # groups of the positional conv
    num_buckets: int = 320  # relative-position buckets (both directions; WavLM only)
    max_bucket_distance: int = 800  # distance (frames) where the buckets saturate (WavLM only)
    feat_proj_layer_norm: bool = True  # LayerNorm before the feature projection (HuBERT may turn it off)
    do_stable_layer_norm: bool = False  # True: pre-LN layers + final LN (large); False: post-LN (base)
    use_weighted_layer_sum: bool = False  # heads use softmax(layer_weights)-weighted hidden states
    vocab_size: int | None = 32  # CTC output classes
    pad_token_id: int | None = 0  # CTC blank id
    bos_token_id: int | None = 1  # kept for round trips only
    eos_token_id: int | None = 2  # kept for round trips only
    id2label: tuple[str, ...] = ("LABEL_0", "LABEL_1")  # label names; num_labels = len(id2label)
    classifier_proj_size: int = 256  # sequence-classification projection (kept for round trips)
    tdnn_dim: tuple[int, ...] = (512, 512, 512, 512, 1500)  # x-vector TDNN channels
    tdnn_kernel: tuple[int, ...] = (5, 3, 3, 1, 1)  # x-vector TDNN kernels (frames)
    tdnn_dilation: tuple[int, ...] = (1, 2, 3, 1, 1)  # x-vector TDNN dilations
    xvector_output_dim: int = 512  # x-vector embedding size D
    architectures: tuple[str, ...] = field(default=())  # e.g. ("WavLMForCTC",)

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS + ("id2label", "architectures"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise _bad(name, value, "a list")
            object.__setattr__(self, name, tuple(value))
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "num_buckets",
                     "max_bucket_distance", "classifier_proj_size", "xvector_output_dim"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise _bad(name, getattr(self, name), "a positive int")
        for name in ("vocab_size",):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                raise _bad(name, v, "a positive int or null")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 0):
                raise _bad(name, v, "a non-negative int or null")
        if self.model_type not in FAMILIES:
            raise _bad("model_type", self.model_type, " or ".join(f'"{m}"' for m in FAMILIES))
        for name in ("conv_bias", "do_stable_layer_norm", "use_weighted_layer_sum", "feat_proj_layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, getattr(self, name), "true or false")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0 < eps < 1):
            raise _bad("layer_norm_eps", eps, "a float in (0, 1)")
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise _bad(name, getattr(self, name), f"one of {', '.join(ACTIVATIONS)}")
        if self.feat_extract_norm not in ("group", "layer"):
            raise _bad("feat_extract_norm", self.feat_extract_norm, '"group" or "layer"')
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if not value or not all(_is_int(v) and v >= 1 for v in value):
                raise _bad(name, value, "a non-empty list of positive ints")
        if not (len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel)):
            raise ValueError(
                f"config fields 'conv_dim', 'conv_stride', 'conv_kernel' must have the same length, got "
                f"{len(self.conv_dim)}, {len(self.conv_stride)}, {len(self.conv_kernel)}")
        if not (len(self.tdnn_dim) == len(self.tdnn_kernel) == len(self.tdnn_dilation)):
            raise ValueError(
                f"config fields 'tdnn_dim', 'tdnn_kernel', 'tdnn_dilation' must have the same length, got "
                f"{len(self.tdnn_dim)}, {len(self.tdnn_kernel)}, {len(self.tdnn_dilation)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"config field 'hidden_size' ({self.hidden_size}) must be divisible by "
                             f"'num_attention_heads' ({self.num_attention_heads})")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(f"config field 'hidden_size' ({self.hidden_size}) must be divisible by "
                             f"'num_conv_pos_embedding_groups' ({self.num_conv_pos_embedding_groups})")
        if self.num_buckets < 4 or self.max_bucket_distance <= self.num_buckets // 4:
            raise ValueError(f"config fields 'num_buckets' ({self.num_buckets}) must be >= 4 and "
                             f"'max_bucket_distance' ({self.max_bucket_distance}) above num_buckets // 4")
        if not self.feat_proj_layer_norm and self.model_type != "hubert":
            raise ValueError(f"config field 'feat_proj_layer_norm' is false, but only HuBERT checkpoints can drop "
                             f"the feature projection's LayerNorm (model_type is {self.model_type!r})")
        if not self.id2label or not all(isinstance(v, str) for v in self.id2label):
            raise _bad("id2label", self.id2label, "a non-empty list of label names")
        if not all(isinstance(v, str) for v in self.architectures):
            raise _bad("architectures", self.architectures, "a list of class names")
        if self.vocab_size is not None and self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise ValueError(f"config field 'pad_token_id' ({self.pad_token_id}) must be below "
                             f"'vocab_size' ({self.vocab_size})")

    @property
    def family(self) -> str:
        """Display name of the model family: "WavLM", "Wav2Vec2" or "HuBERT"."""
        return FAMILIES[self.model_type]

    @property
    def relative_position_bias(self) -> bool:
        """Whether attention adds WavLM's gated relative position bias (else plain attention)."""
        return self.model_type == "wavlm"

    @property
    def num_labels(self) -> int:
        """Number of labels (frame classes for the frame head), ``len(id2label)``."""
        return len(self.id2label)

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden_size // num_attention_heads``."""
        return self.hidden_size // self.num_attention_heads

    @property
    def receptive_field(self) -> int:
        """Samples seen by one frame of the conv feature encoder (400 for the standard stack)."""
        r = 1
        for k, s in zip(reversed(self.conv_kernel), reversed(self.conv_stride)):
            r = (r - 1) * s + k
        return r

    @property
    def hop(self) -> int:
        """Samples between frames: the product of the conv strides (320 for the standard stack)."""
        return math.prod(self.conv_stride)

    def frames_for_samples(self, n_samples: int) -> int:
        """Frames this feature encoder yields for ``n_samples`` samples (0 when too short);
        the exact chain of conv output lengths, as transformers'
        ``_get_feat_extract_output_lengths``."""
        n = int(n_samples)
        for k, s in zip(self.conv_kernel, self.conv_stride):
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WavLMConfig":
        """Read a ``config.json`` dict. Keys this class does not model (dropouts, masking,
        quantizer, bookkeeping) are ignored; ``model_type`` must be one of :data:`FAMILIES`
        ("wavlm" when absent); features not implemented here (``add_adapter``,
        ``adapter_attn_dim``, ``conv_pos_batch_norm``) must be off;
        ``num_feat_extract_layers`` and ``num_labels`` must agree with the lists. Raises
        ``TypeError`` for a non-dict and ``ValueError`` naming the field for a bad value."""
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        model_type = d.get("model_type", "wavlm")
        if model_type not in FAMILIES:
            raise ValueError(f"config field 'model_type' is {model_type!r}; supported model types are "
                             + ", ".join(f'"{m}"' for m in FAMILIES))
        for name, fine, what in _UNSUPPORTED:
            if d.get(name) not in (None, fine):
                raise ValueError(f"config field {name!r} is {d[name]!r}, but {what}")
        kwargs = {f.name: d[f.name] for f in fields(cls) if f.name in d and f.name != "id2label"
                  and not (f.name == "architectures" and d[f.name] is None)
                  and not (f.name == "feat_proj_layer_norm" and model_type != "hubert")}
        kwargs["model_type"] = model_type
        labels = d.get("id2label")
        if labels is not None:
            if not isinstance(labels, dict) or not labels:
                raise _bad("id2label", labels, "a non-empty {id: label} mapping")
            try:
                ids = sorted(int(k) for k in labels)
            except (TypeError, ValueError):
                raise _bad("id2label", labels, "a mapping with integer ids") from None
            if ids != list(range(len(ids))):
                raise _bad("id2label", labels, "a mapping with ids 0..n-1")
            by_id = {int(k): v for k, v in labels.items()}
            kwargs["id2label"] = tuple(str(by_id[i]) for i in ids)
        num_labels = d.get("num_labels")
        if num_labels is not None:
            if not _is_int(num_labels) or num_labels < 1:
                raise _bad("num_labels", num_labels, "a positive int")
            if labels is None:
                kwargs["id2label"] = tuple(f"LABEL_{i}" for i in range(num_labels))
            elif num_labels != len(kwargs["id2label"]):
                raise ValueError(f"config field 'num_labels' ({num_labels}) disagrees with "
                                 f"'id2label' ({len(kwargs['id2label'])} labels)")
        config = cls(**kwargs)
        n_conv = d.get("num_feat_extract_layers")
        if n_conv is not None and n_conv != len(config.conv_dim):
            raise ValueError(f"config field 'num_feat_extract_layers' ({n_conv}) disagrees with "
                             f"'conv_dim' ({len(config.conv_dim)} layers)")
        return config

    @classmethod
    def from_json(cls, path: str | Path) -> "WavLMConfig":
        """Read a ``config.json`` file; raises ``OSError`` if unreadable, ``ValueError`` if not
        valid JSON or a field is bad."""
        return cls.from_dict(read_json(path))

    def to_dict(self) -> dict[str, Any]:
        """A ``config.json`` dict that transformers' config class of the family
        (``WavLMConfig``, ``Wav2Vec2Config``, ``HubertConfig``) loads into the same
        architecture. SpecAugment is written as off (``mask_time_prob`` 0), so transformers
        does not expect the training-only ``masked_spec_embed`` weight."""
        skip = {"architectures", "id2label", "model_type"}
        if self.model_type != "wavlm":
            skip |= {"num_buckets", "max_bucket_distance"}
        if self.model_type != "hubert":
            skip.add("feat_proj_layer_norm")
        if self.model_type == "hubert":  # HubertConfig has no x-vector fields
            skip |= {"tdnn_dim", "tdnn_kernel", "tdnn_dilation", "xvector_output_dim"}
        d: dict[str, Any] = {"model_type": self.model_type, "architectures": list(self.architectures) or None}
        for f in fields(self):
            if f.name in skip:
                continue
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        d["id2label"] = {str(i): label for i, label in enumerate(self.id2label)}
        d["label2id"] = {label: i for i, label in enumerate(self.id2label)}
        d["num_feat_extract_layers"] = len(self.conv_dim)
        if self.model_type != "hubert":
            d["add_adapter"] = False
        d["mask_time_prob"] = 0.0
        d["mask_feature_prob"] = 0.0
        return d


@dataclass(frozen=True)
class PreprocessorConfig:
    """Input preparation of a checkpoint (``preprocessor_config.json``), as transformers'
    ``Wav2Vec2FeatureExtractor``; defaults are that class's defaults.

    Raises ``ValueError`` naming the field for an unsupported value.
    """

    do_normalize: bool = True  # per-utterance zero-mean unit-variance normalisation
    sampling_rate: int = SAMPLE_RATE  # Hz the model expects
    return_attention_mask: bool = False  # whether batched padded inputs should pass an attention mask
    padding_value: float = 0.0  # value used for padding samples
    feature_size: int = 1  # channels per sample (mono)

    def __post_init__(self) -> None:
        for name in ("do_normalize", "return_attention_mask"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"preprocessor field {name!r} must be true or false, got {getattr(self, name)!r}")
        if not _is_int(self.sampling_rate) or self.sampling_rate <= 0:
            raise ValueError(f"preprocessor field 'sampling_rate' must be a positive int, got {self.sampling_rate!r}")
        if self.feature_size != 1:
            raise ValueError(f"preprocessor field 'feature_size' must be 1 (mono), got {self.feature_size!r}")
        if isinstance(self.padding_value, bool) or not isinstance(self.padding_value, (int, float)):
            raise ValueError(f"preprocessor field 'padding_value' must be a number, got {self.padding_value!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessorConfig":
        """Read a ``preprocessor_config.json`` dict; other keys are ignored. Raises
        ``TypeError``/``ValueError`` as the constructor."""
        if not isinstance(d, dict):
            raise TypeError(f"preprocessor config must be a dict, got {type(d).__name__}")
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    @classmethod
    def from_json(cls, path: str | Path) -> "PreprocessorConfig":
        """Read a ``preprocessor_config.json`` file."""
        return cls.from_dict(read_json(path))

    def to_dict(self) -> dict[str, Any]:
        """A ``preprocessor_config.json`` dict that transformers' feature extractor loads."""
        return {
            "feature_extractor_type": "Wav2Vec2FeatureExtractor",
            "feature_size": self.feature_size,
            "sampling_rate": self.sampling_rate,
            "padding_value": self.padding_value,
            "padding_side": "right",
            "do_normalize": self.do_normalize,
            "return_attention_mask": self.return_attention_mask,
        }

    def normalize(self, x):
        """Per-utterance zero-mean, unit-variance normalisation as
        ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``: ``(x - mean) / sqrt(var + 1e-7)``
        with the population variance, over the last axis, in float32. Returns ``x`` unchanged
        when ``do_normalize`` is false.

        Shape: ``[N]`` or ``[B, N]`` samples; a ``torch.Tensor`` gives a float32 tensor on
        its device, a ``numpy.ndarray`` a float32 array. Raises ``TypeError`` for other types.
        """
        if not self.do_normalize:
            return x
        if isinstance(x, torch.Tensor):
            x = x.float()
            var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
            return (x - mean) / torch.sqrt(var + 1e-7)
        if isinstance(x, np.ndarray):
            x = x.astype(np.float32, copy=False)
            return (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-7)
        raise TypeError(f"normalize expects a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
