"""Write a Llama-family model's weights as a GGUF file that llama.cpp loads.

Amend edits float32 Hugging Face weights; llama.cpp reads GGUF, whose tensor names, Q/K row
order and tokenizer fields differ. This module maps one to the other with the `gguf` package:

- metadata: copied from a template GGUF when the model came from one (the default SmolLM2 ships
  as a GGUF, so its tokenizer fields are llama.cpp's own), else built from the HF config and a
  byte-level BPE tokenizer;
- tensors: renamed, Q and K rows permuted back to llama.cpp's interleaved rotary order (the
  inverse of what transformers does when it reads a GGUF), then stored as F32, F16 or a block
  quantisation. Norms and other 1-D tensors always stay F32, as llama.cpp's own converter keeps
  them.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

QTYPES = {"f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16,
          "bf16": GGMLQuantizationType.BF16,
          "q8_0": GGMLQuantizationType.Q8_0, "q4_1": GGMLQuantizationType.Q4_1}
# general.file_type values (llama.cpp's LLAMA_FTYPE_*): all F32, mostly F16, Q8_0, Q4_1
FILE_TYPES = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_1": 3}
ARCH = "llama"
MANIFEST_KEY = "amend.manifest"
_SKIP_KEYS = ("GGUF.", "general.architecture", "general.file_type",
              "general.quantization_version", MANIFEST_KEY)
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight",
              "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
Progress = Callable[[str], None]


class GGUFExportError(ValueError):
    """The model cannot be written as GGUF (not Llama-shaped, or its tokenizer is not one
    this writer knows)."""


@dataclass(frozen=True)
class Field:
    """One metadata entry: its value and GGUF types (sub_type for arrays)."""

    value: Any
    vtype: GGUFValueType
    sub_type: GGUFValueType | None = None


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name for a Hugging Face Llama parameter."""
    if hf_name in _TOP_NAMES:
        return _TOP_NAMES[hf_name]
    match = _LAYER.match(hf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    raise GGUFExportError(f"no GGUF name for parameter {hf_name!r}: only Llama-architecture "
                          "models can be exported as GGUF")


def to_gguf_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Q/K rows in llama.cpp's interleaved rotary order: per head, HF keeps the two rotary
    halves apart (rotate_half); GGUF interleaves them pairwise."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def template_fields(path: Path) -> dict[str, Field]:
    """Every metadata entry of a GGUF file except the ones each written file sets itself."""
    reader = GGUFReader(path)
    fields = {}
    for key, field in reader.fields.items():
        if key.startswith(_SKIP_KEYS):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        fields[key] = Field(field.contents(), vtype, sub)
    return fields


def _config_fields(config: Any) -> dict[str, Field]:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    u32, f32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32
    fields = {
        "block_count": Field(config.num_hidden_layers, u32),
        "context_length": Field(config.max_position_embeddings, u32),
        "embedding_length": Field(config.hidden_size, u32),
        "feed_forward_length": Field(config.intermediate_size, u32),
        "attention.head_count": Field(heads, u32),
        "attention.head_count_kv": Field(getattr(config, "num_key_value_heads", heads), u32),
        "rope.freq_base": Field(float(getattr(config, "rope_theta", None)
                                      or (getattr(config, "rope_parameters", None) or {})
                                      .get("rope_theta", 10000.0)), f32),
        "attention.layer_norm_rms_epsilon": Field(float(config.rms_norm_eps), f32),
        "vocab_size": Field(config.vocab_size, u32),
        "rope.dimension_count": Field(head_dim, u32),
    }
    return {f"{ARCH}.{key}": value for key, value in fields.items()}


def tokenizer_fields(tokenizer: Any) -> dict[str, Field]:
    """llama.cpp's tokenizer fields for a byte-level BPE tokenizer (GPT-2 style, as Llama-3,
    SmolLM and most small chat models use). Other tokenizer kinds are refused."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise GGUFExportError("only byte-level BPE tokenizers can be written to GGUF here; "
                              "export --format hf and use llama.cpp's convert_hf_to_gguf.py")
    vocab = tokenizer.get_vocab()
    tokens = [""] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    special = set(tokenizer.all_special_ids) | {
        t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    types = [3 if i in special else 1 for i in range(len(tokens))]  # 3: control, 1: normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    arr, s, i32, u32 = (GGUFValueType.ARRAY, GGUFValueType.STRING, GGUFValueType.INT32,
                        GGUFValueType.UINT32)
    fields = {"tokenizer.ggml.model": Field("gpt2", s),
              "tokenizer.ggml.pre": Field("default", s),
              "tokenizer.ggml.tokens": Field(tokens, arr, s),
              "tokenizer.ggml.token_type": Field(types, arr, i32),
              "tokenizer.ggml.merges": Field(merges, arr, s),
              "tokenizer.ggml.add_bos_token": Field(False, GGUFValueType.BOOL),
              "tokenizer.ggml.add_space_prefix": Field(False, GGUFValueType.BOOL)}
    for name, attr in (("bos", "bos_token_id"), ("eos", "eos_token_id"),
                       ("unknown", "unk_token_id"), ("padding", "pad_token_id")):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            fields[f"tokenizer.ggml.{name}_token_id"] = Field(int(value), u32)
    if tokenizer.chat_template:
        fields["tokenizer.chat_template"] = Field(tokenizer.chat_template, s)
    return fields


def metadata(config: Any, tokenizer: Any, template: Path | None) -> dict[str, Field]:
    """The file's metadata: the template's where there is one, else built from the model."""
    if getattr(config, "model_type", None) != "llama":
        raise GGUFExportError(f"model type {getattr(config, 'model_type', '?')!r}: only "
                              "Llama-architecture models can be exported as GGUF here")
    if template is not None:
        fields = template_fields(template)
        fields.update(_config_fields(config))  # the exported shapes win over the template's
        return fields
    name = getattr(config, "_name_or_path", "") or "model"
    return {"general.name": Field(Path(name).name, GGUFValueType.STRING),
            **_config_fields(config), **tokenizer_fields(tokenizer)}


def tensors(state: dict[str, torch.Tensor], config: Any) -> Iterable[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array in GGUF row order) for every weight; a tied lm_head is left
    out (llama.cpp reuses token_embd when there is no output tensor)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", heads)
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and tied:
            continue
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = to_gguf_rows(data, heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = to_gguf_rows(data, kv_heads)
        yield gguf_name(hf_name), np.ascontiguousarray(data)


def encode(name: str, data: np.ndarray, qtype: str) -> tuple[np.ndarray, GGMLQuantizationType]:
    """The stored bytes or floats of one tensor; 1-D tensors and rows that do not divide into
    quantisation blocks stay F32. Under 4-bit types the token embedding keeps Q8_0, as
    llama.cpp's own quantiser does (so an unedited SmolLM2 comes out as the shipped file)."""
    kind = QTYPES[qtype]
    if kind == GGMLQuantizationType.Q4_1 and name in ("token_embd.weight", "output.weight"):
        kind = GGMLQuantizationType.Q8_0
    if data.ndim < 2 or kind == GGMLQuantizationType.F32:
        return data, GGMLQuantizationType.F32
    if kind == GGMLQuantizationType.F16:
        return data.astype(np.float16), kind
    if data.shape[-1] % 32:
        return data, GGMLQuantizationType.F32
    return quantize(data, kind), kind


def write_gguf(model: torch.nn.Module, state: dict[str, torch.Tensor], tokenizer: Any,
               path: Path, qtype: str = "f32", template: Path | None = None,
               manifest: dict | None = None, progress: Progress | None = None) -> Path:
    """Write `state` (the model's own weights) as GGUF at `path`, with `manifest` as JSON
    under the `amend.manifest` key; return `path`."""
    if qtype not in QTYPES:
        raise GGUFExportError(f"unknown GGUF type {qtype!r}; choose one of {sorted(QTYPES)}")
    config = model.config
    fields = metadata(config, tokenizer, template)
    writer = GGUFWriter(path, ARCH)
    try:
        for key, field in fields.items():
            writer.add_key_value(key, field.value, field.vtype, sub_type=field.sub_type)
        writer.add_file_type(FILE_TYPES[qtype])
        if qtype not in ("f32", "f16", "bf16"):
            writer.add_quantization_version(2)
        if manifest is not None:
            writer.add_string(MANIFEST_KEY, json.dumps(manifest, ensure_ascii=False))
        items = list(tensors(state, config))
        for number, (name, data) in enumerate(items, 1):
            stored, kind = encode(name, data, qtype)
            writer.add_tensor(name, stored, raw_dtype=kind)
            if progress is not None and (number % 50 == 0 or number == len(items)):
                progress(f"Encoding tensors as {qtype}: {number}/{len(items)}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
    finally:
        writer.close()
    os.chmod(path, 0o644)
    return path
