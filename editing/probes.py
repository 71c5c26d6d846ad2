"""The guard's fixed locality probes: prompts about unrelated facts whose teacher-forced answer
tokens must stay as the model had them before an edit."""
from __future__ import annotations

import json

from assistant.metrics import predicted_target_tokens, unchanged_share
from config import REPO_ROOT

PROBES_PATH = REPO_ROOT / "editing" / "data" / "locality_probes.json"


def load_probes(limit: int | None = None) -> list[tuple[str, str]]:
    """The guard's shipped locality probes as (prompt, answer), the first `limit` (or all)."""
    raw = json.loads(PROBES_PATH.read_text(encoding="utf-8"))["probes"]
    return [(p["prompt"], p["answer"]) for p in raw[:limit]]


def probe_predictions(model, tok, probes: list[tuple[str, str]]) -> list[list[int]]:
    """Argmax tokens over each probe's true answer (teacher-forced), to compare later."""
    return [predicted_target_tokens(model, tok, p, a)[0] for p, a in probes]


def probe_locality(before: list[list[int]], after: list[list[int]]) -> float:
    """Mean share of probe tokens an edit left unchanged."""
    return sum(unchanged_share(b, a) for b, a in zip(before, after)) / max(len(before), 1)
