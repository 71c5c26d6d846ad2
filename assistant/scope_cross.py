"""A fine-tuned cross-encoder as a scope decider, for comparison with the shipped head.

MiniLM reads "query [SEP] edit prompt" together and a linear layer on its mean-pooled output
gives p(in scope). It sees the exact wording of both texts (the head only sees embeddings),
but costs one transformer pass per gated candidate on the chat's hot path. Trained and scored
by `python -m assistant.scope_train --cross-encoder` on the same pairs and subject split.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer

from assistant.embedder import default_embedding_path

MAX_TOKENS = 64


class CrossEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        path = default_embedding_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
        self.out = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, queries: list[str], prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(queries, prompts, padding=True, truncation=True,
                               max_length=MAX_TOKENS, return_tensors="pt")
        hidden = self.encoder(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return self.out(pooled).squeeze(-1)  # (B,) logits

    @torch.inference_mode()
    def probabilities(self, queries: list[str], prompts: list[str], batch: int = 64) -> np.ndarray:
        self.eval()
        out = [torch.sigmoid(self(queries[i:i + batch], prompts[i:i + batch])).numpy()
               for i in range(0, len(queries), batch)]
        return np.concatenate(out)


def train_cross_encoder(queries: list[str], prompts: list[str], labels: np.ndarray,
                        max_seconds: float, batch: int = 32, lr: float = 3e-5,
                        seed: int = 0) -> CrossEncoder:
    """One pass over the pairs in random order, or fewer steps if `max_seconds` runs out."""
    torch.manual_seed(seed)
    model = CrossEncoder()
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    y = torch.from_numpy(labels.astype(np.float32))
    pos_weight = (len(y) - y.sum()) / y.sum().clamp(min=1)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    order = torch.randperm(len(queries)).tolist()
    deadline = time.monotonic() + max_seconds
    bar = tqdm(range(0, len(order), batch), desc="Training cross-encoder", mininterval=5.0)
    for start in bar:
        idx = order[start:start + batch]
        loss = loss_fn(model([queries[i] for i in idx], [prompts[i] for i in idx]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if time.monotonic() > deadline:
            break
    return model


def pair_latency_ms(model: CrossEncoder, query: str, prompt: str, runs: int = 50) -> float:
    """Median time of one (query, prompt) decision, as the router would pay per candidate."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        model.probabilities([query], [prompt])
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)
