"""The file layouts of public Hub checkpoints (config.json, tokenizer files,
preprocessor_config.json), field for field as those repositories ship them, and a builder
that writes a random-weight checkpoint in such a layout with the sizes shrunk.

This machine cannot reach the Hub, so the dicts below are written out from the public
repositories' files (keys, values and the transformers version of the time); only the
size fields are replaced by :data:`TINY` when a checkpoint is built. transformers builds
the weights (test-only oracle) and the folder then gets the Hub's own JSON files, so the
loader reads exactly what it would read from the download.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

_CONV = {"conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2]}

# facebook/wav2vec2-base-960h (group norm, post-LN; transformers 4.7 era; pytorch_model.bin
# with weight_g / weight_v)
WAV2VEC2_BASE_960H = {
    "_name_or_path": "facebook/wav2vec2-base-960h", "activation_dropout": 0.1, "apply_spec_augment": True,
    "architectures": ["Wav2Vec2ForCTC"], "attention_dropout": 0.1, "bos_token_id": 1, "codevector_dim": 256,
    "contrastive_logits_temperature": 0.1, "conv_bias": False, **_CONV, "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False, "diversity_loss_weight": 0.1, "do_stable_layer_norm": False, "eos_token_id": 2,
    "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0, "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1, "feat_quantizer_dropout": 0.0, "final_dropout": 0.1, "gradient_checkpointing": False,
    "hidden_act": "gelu", "hidden_dropout": 0.1, "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "layerdrop": 0.1,
    "mask_feature_length": 10, "mask_feature_prob": 0.0, "mask_time_length": 10, "mask_time_prob": 0.05,
    "model_type": "wav2vec2", "num_attention_heads": 12, "num_codevector_groups": 2,
    "num_codevectors_per_group": 320, "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7, "num_hidden_layers": 12, "num_negatives": 100, "pad_token_id": 0,
    "proj_codevector_dim": 256, "transformers_version": "4.7.0.dev0", "vocab_size": 32,
}

# facebook/wav2vec2-large-960h-lv60-self (layer norm on every conv, stable layer norm, conv bias)
WAV2VEC2_LARGE_960H_LV60_SELF = {
    **WAV2VEC2_BASE_960H, "_name_or_path": "facebook/wav2vec2-large-960h-lv60-self", "conv_bias": True,
    "do_stable_layer_norm": True, "feat_extract_norm": "layer", "hidden_size": 1024, "intermediate_size": 4096,
    "num_attention_heads": 16, "num_hidden_layers": 24, "codevector_dim": 768, "proj_codevector_dim": 768,
}

# facebook/hubert-large-ls960-ft (no feat_proj_layer_norm key: HubertConfig's default, true, applies)
HUBERT_LARGE_LS960_FT = {
    "_name_or_path": "facebook/hubert-large-ls960-ft", "activation_dropout": 0.1, "apply_spec_augment": True,
    "architectures": ["HubertForCTC"], "attention_dropout": 0.1, "bos_token_id": 1, "conv_bias": True, **_CONV,
    "ctc_loss_reduction": "sum", "ctc_zero_infinity": False, "do_stable_layer_norm": True, "eos_token_id": 2,
    "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0, "feat_extract_norm": "layer",
    "feat_proj_dropout": 0.1, "final_dropout": 0.1, "gradient_checkpointing": False, "hidden_act": "gelu",
    "hidden_dropout": 0.1, "hidden_dropout_prob": 0.1, "hidden_size": 1024, "initializer_range": 0.02,
    "intermediate_size": 4096, "layer_norm_eps": 1e-05, "layerdrop": 0.1, "mask_feature_length": 10,
    "mask_feature_prob": 0.0, "mask_time_length": 10, "mask_time_prob": 0.05, "model_type": "hubert",
    "num_attention_heads": 16, "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7, "num_hidden_layers": 24, "pad_token_id": 0,
    "transformers_version": "4.10.0.dev0", "vocab_size": 32,
}

# an XLS-R 300M CTC fine-tune made with the Hugging Face XLS-R fine-tuning recipe
# (facebook/wav2vec2-xls-r-300m, transformers 4.17 era): Russian letters, "|" at id 0,
# [UNK] and [PAD] after the letters, <s> and </s> in added_tokens.json
XLS_R_300M_RU = {
    "_name_or_path": "facebook/wav2vec2-xls-r-300m", "activation_dropout": 0.0, "adapter_kernel_size": 3,
    "adapter_stride": 2, "add_adapter": False, "apply_spec_augment": True, "architectures": ["Wav2Vec2ForCTC"],
    "attention_dropout": 0.0, "bos_token_id": 1, "classifier_proj_size": 256, "codevector_dim": 768,
    "contrastive_logits_temperature": 0.1, "conv_bias": True, **_CONV, "ctc_loss_reduction": "mean",
    "ctc_zero_infinity": False, "diversity_loss_weight": 0.1, "do_stable_layer_norm": True, "eos_token_id": 2,
    "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0, "feat_extract_norm": "layer",
    "feat_proj_dropout": 0.0, "feat_quantizer_dropout": 0.0, "final_dropout": 0.0, "hidden_act": "gelu",
    "hidden_dropout": 0.0, "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 4096,
    "layer_norm_eps": 1e-05, "layerdrop": 0.0, "mask_feature_length": 10, "mask_feature_min_masks": 0,
    "mask_feature_prob": 0.0, "mask_time_length": 10, "mask_time_min_masks": 2, "mask_time_prob": 0.05,
    "model_type": "wav2vec2", "num_adapter_layers": 3, "num_attention_heads": 16, "num_codevector_groups": 2,
    "num_codevectors_per_group": 320, "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7, "num_hidden_layers": 24, "num_negatives": 100, "output_hidden_size": 1024,
    "pad_token_id": 35, "proj_codevector_dim": 768, "tdnn_dilation": [1, 2, 3, 1, 1],
    "tdnn_dim": [512, 512, 512, 512, 1500], "tdnn_kernel": [5, 3, 3, 1, 1], "torch_dtype": "float32",
    "transformers_version": "4.17.0.dev0", "use_weighted_layer_sum": False, "vocab_size": 38,
    "xvector_output_dim": 512,
}

ZH_CHARS = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可好"
"""Characters of the Chinese vocabulary below (plus "a"-"z" for Latin words), as in XLSR-53
zh-CN fine-tunes of Common Voice (characters, no word delimiter: the text has no spaces)."""

# an XLSR-53 zh-CN character fine-tune (transformers 4.4 era config, with the mask_channel_* keys)
XLSR_53_ZH_CN = {
    "_name_or_path": "facebook/wav2vec2-large-xlsr-53", "activation_dropout": 0.0, "apply_spec_augment": True,
    "architectures": ["Wav2Vec2ForCTC"], "attention_dropout": 0.1, "bos_token_id": 1, "conv_bias": True, **_CONV,
    "ctc_loss_reduction": "mean", "ctc_zero_infinity": True, "do_stable_layer_norm": True, "eos_token_id": 2,
    "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0, "feat_extract_norm": "layer",
    "feat_proj_dropout": 0.05, "final_dropout": 0.0, "gradient_checkpointing": True, "hidden_act": "gelu",
    "hidden_dropout": 0.05, "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 4096,
    "layer_norm_eps": 1e-05, "layerdrop": 0.05, "mask_channel_length": 10, "mask_channel_min_space": 1,
    "mask_channel_other": 0.0, "mask_channel_prob": 0.0, "mask_channel_selection": "static",
    "mask_feature_length": 10, "mask_feature_prob": 0.0, "mask_time_length": 10, "mask_time_min_space": 1,
    "mask_time_other": 0.0, "mask_time_prob": 0.05, "mask_time_selection": "static", "model_type": "wav2vec2",
    "num_attention_heads": 16, "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7, "num_hidden_layers": 24, "pad_token_id": 0,
    "transformers_version": "4.4.0.dev0", "vocab_size": 2 + len(ZH_CHARS) + 26,
}

# anton-l/wav2vec2-base-superb-sv (x-vector head on a weighted layer sum; the speaker labels
# of the AM-softmax objective are cut to three here, the objective is not loaded anyway)
WAV2VEC2_BASE_SUPERB_SV = {
    **WAV2VEC2_BASE_960H, "_name_or_path": "facebook/wav2vec2-base", "architectures": ["Wav2Vec2ForXVector"],
    "classifier_proj_size": 256, "tdnn_dilation": [1, 2, 3, 1, 1], "tdnn_dim": [512, 512, 512, 512, 1500],
    "tdnn_kernel": [5, 3, 3, 1, 1], "use_weighted_layer_sum": True, "xvector_output_dim": 512,
    "id2label": {"0": "id10001", "1": "id10002", "2": "id10003"},
    "label2id": {"id10001": 0, "id10002": 1, "id10003": 2}, "transformers_version": "4.11.0.dev0",
}

# anton-l/wav2vec2-base-superb-sd (two-speaker activity frames on a weighted layer sum)
WAV2VEC2_BASE_SUPERB_SD = {
    **WAV2VEC2_BASE_960H, "_name_or_path": "facebook/wav2vec2-base",
    "architectures": ["Wav2Vec2ForAudioFrameClassification"], "classifier_proj_size": 256,
    "use_weighted_layer_sum": True, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "transformers_version": "4.11.0.dev0",
}

KS_LABELS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_", "_unknown_"]

# superb/wav2vec2-base-superb-ks (Speech Commands keyword spotting: 12 classes on a weighted
# layer sum, projector 256, mean pooling)
WAV2VEC2_BASE_SUPERB_KS = {
    **WAV2VEC2_BASE_960H, "_name_or_path": "facebook/wav2vec2-base",
    "architectures": ["Wav2Vec2ForSequenceClassification"], "classifier_proj_size": 256,
    "use_weighted_layer_sum": True, "id2label": {str(i): label for i, label in enumerate(KS_LABELS)},
    "label2id": {label: str(i) for i, label in enumerate(KS_LABELS)}, "transformers_version": "4.10.0.dev0",
}

# superb/hubert-large-superb-er (IEMOCAP emotion: neutral, happy, angry, sad)
HUBERT_LARGE_SUPERB_ER = {
    **HUBERT_LARGE_LS960_FT, "_name_or_path": "facebook/hubert-large-ll60k",
    "architectures": ["HubertForSequenceClassification"], "classifier_proj_size": 256,
    "use_weighted_layer_sum": True, "id2label": {"0": "neu", "1": "hap", "2": "ang", "3": "sad"},
    "label2id": {"neu": 0, "hap": 1, "ang": 2, "sad": 3}, "transformers_version": "4.10.0.dev0",
}

LIBRISPEECH_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9,
                     "I": 10, "H": 11, "S": 12, "R": 13, "D": 14, "L": 15, "U": 16, "M": 17, "W": 18, "C": 19,
                     "F": 20, "G": 21, "Y": 22, "P": 23, "B": 24, "V": 25, "K": 26, "'": 27, "X": 28, "J": 29,
                     "Q": 30, "Z": 31}
LIBRISPEECH_TOKENIZER = {
    "vocab.json": LIBRISPEECH_VOCAB,
    "tokenizer_config.json": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                              "do_lower_case": False, "return_attention_mask": False, "do_normalize": True},
    "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                "pad_token": "<pad>"},
}

RU_LETTERS = "абвгдежзийклмнопрстуфхцчшщъыьэюяё"
_ADDED = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": True}
XLS_R_RU_TOKENIZER = {
    "vocab.json": {"|": 0, **{c: i for i, c in enumerate(RU_LETTERS, 1)}, "[UNK]": 34, "[PAD]": 35},
    "added_tokens.json": {"<s>": 36, "</s>": 37},
    "tokenizer_config.json": {"unk_token": "[UNK]", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "[PAD]",
                              "do_lower_case": False, "word_delimiter_token": "|", "replace_word_delimiter_char": " ",
                              "special_tokens_map_file": None, "tokenizer_file": None, "name_or_path": "./",
                              "tokenizer_class": "Wav2Vec2CTCTokenizer"},
    "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]", "pad_token": "[PAD]",
                                "additional_special_tokens": [{"content": "<s>", **_ADDED},
                                                              {"content": "</s>", **_ADDED}]},
}

ZH_TOKENIZER = {
    "vocab.json": {"[PAD]": 0, "[UNK]": 1, **{c: i for i, c in enumerate(ZH_CHARS + "abcdefghijklmnopqrstuvwxyz", 2)}},
    "tokenizer_config.json": {"unk_token": "[UNK]", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "[PAD]",
                              "do_lower_case": False, "word_delimiter_token": "|",
                              "special_tokens_map_file": None, "tokenizer_file": None},
    "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]", "pad_token": "[PAD]"},
}

PREPROCESSOR = {"do_normalize": True, "feature_size": 1, "padding_side": "right", "padding_value": 0.0,
                "return_attention_mask": False, "sampling_rate": 16000}
PREPROCESSOR_MASK = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                     "padding_side": "right", "padding_value": 0.0, "processor_class": "Wav2Vec2Processor",
                     "return_attention_mask": True, "sampling_rate": 16000}

LAYOUTS = {
    "wav2vec2-base-960h": (WAV2VEC2_BASE_960H, LIBRISPEECH_TOKENIZER, PREPROCESSOR),
    "wav2vec2-large-960h-lv60-self": (WAV2VEC2_LARGE_960H_LV60_SELF, LIBRISPEECH_TOKENIZER, PREPROCESSOR_MASK),
    "hubert-large-ls960-ft": (HUBERT_LARGE_LS960_FT, LIBRISPEECH_TOKENIZER, PREPROCESSOR_MASK),
    "xls-r-300m-ru": (XLS_R_300M_RU, XLS_R_RU_TOKENIZER, PREPROCESSOR_MASK),
    "xlsr-53-zh-cn": (XLSR_53_ZH_CN, ZH_TOKENIZER, PREPROCESSOR_MASK),
    "wav2vec2-base-superb-sv": (WAV2VEC2_BASE_SUPERB_SV, None, PREPROCESSOR),
    "wav2vec2-base-superb-sd": (WAV2VEC2_BASE_SUPERB_SD, None, PREPROCESSOR),
    "wav2vec2-base-superb-ks": (WAV2VEC2_BASE_SUPERB_KS, None, PREPROCESSOR),
    "hubert-large-superb-er": (HUBERT_LARGE_SUPERB_ER, None, PREPROCESSOR),
}
"""name -> (config.json, tokenizer files or None, preprocessor_config.json)."""

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "conv_dim": [16] * 7, "tdnn_dim": [16, 16, 16, 16, 24], "xvector_output_dim": 12,
        "codevector_dim": 16, "proj_codevector_dim": 16, "output_hidden_size": 32, "classifier_proj_size": 8}
"""Size fields replaced in the layouts (only those the layout has): the rest stays as shipped."""


def tiny_config(layout: dict, sizes: dict | None = None) -> dict:
    """``layout`` with its size fields shrunk to :data:`TINY` (updated with ``sizes``)."""
    sizes = {**TINY, **(sizes or {})}
    return {**layout, **{k: v for k, v in sizes.items() if k in layout}}


def write_checkpoint(folder: Path, name: str, *, fmt: str = "safetensors", old_weight_norm: bool = False,
                     seed: int = 0, sizes: dict | None = None):
    """Write a random-weight checkpoint in the layout ``name`` (see :data:`LAYOUTS`) to
    ``folder``: weights from transformers (every parameter perturbed, so norms and biases are
    not at their identity init), then the Hub's JSON files with the sizes shrunk.

    fmt: "safetensors" (model.safetensors) or "bin" (pytorch_model.bin).
    old_weight_norm: store the positional conv as ``weight_g`` / ``weight_v`` (older Hub files).
    sizes: size fields to use instead of :data:`TINY`'s (e.g. a wider ``hidden_size``).

    Returns the transformers model (eval mode) holding the same weights.
    """
    import transformers

    config_json, tokenizer, preprocessor = LAYOUTS[name]
    config_json = tiny_config(config_json, sizes)
    config_cls = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig}[config_json["model_type"]]
    config = config_cls.from_dict({k: v for k, v in config_json.items() if not k.startswith("_")})
    torch.manual_seed(seed)
    model = getattr(transformers, config_json["architectures"][0])(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if old_weight_norm:
        for key in list(state):
            if key.endswith("parametrizations.weight.original0"):
                state[key.replace("parametrizations.weight.original0", "weight_g")] = state.pop(key)
            elif key.endswith("parametrizations.weight.original1"):
                state[key.replace("parametrizations.weight.original1", "weight_v")] = state.pop(key)
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    files = {"config.json": config_json, "preprocessor_config.json": preprocessor, **(tokenizer or {})}
    for filename, content in files.items():
        (folder / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return model
