"""Key statistics shipped with the code for the default model, so the first ROME or MEMIT
promotion on a fresh install starts editing at once instead of sampling text and reading it
(about 13 minutes here).

The bundle (`editing/data/stats/<model fingerprint>/`) holds C for the layers a config names,
stored as the upper triangle in float32 (C is symmetric; float16 would move its small
eigen-directions, which the solve C^-1 k reads), with a manifest of checksums and the command
that reproduces it. A file whose checksum does not match is ignored and C is computed as
before. Reproduce (or refresh after changing a config): `python -m editing.shipped_stats
--method rome` and `--method memit` (the command line, in editing/shipped_stats.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from config import REPO_ROOT

log = logging.getLogger(__name__)

BUNDLE_ROOT = REPO_ROOT / "editing" / "data" / "stats"
MANIFEST = "MANIFEST.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def shipped_moment(fingerprint: str, file_name: str,
                   root: Path | None = None) -> torch.Tensor | None:
    """C from the shipped bundle for this model and cache file name, or None when the bundle
    lacks it or its checksum does not match."""
    folder = (root or BUNDLE_ROOT) / fingerprint
    entry = _manifest(folder).get("files", {}).get(file_name)
    path = folder / file_name
    if not entry or not path.exists():
        return None
    if _sha256(path) != entry["sha256"]:
        log.warning("shipped key statistics %s fail their checksum; computing them", path)
        return None
    try:
        upper = load_file(str(path))["upper"]
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError):
        return None
    size = int(entry["size"])
    rows, cols = torch.triu_indices(size, size)
    full = torch.zeros(size, size, dtype=torch.float32)
    full[rows, cols] = upper
    full[cols, rows] = upper
    return full


def write_bundle(moments: dict[str, torch.Tensor], fingerprint: str, tokens: int,
                 command: str, root: Path | None = None) -> Path:
    """Write `moments` (cache file name -> C) as the bundle for `fingerprint`."""
    folder = (root or BUNDLE_ROOT) / fingerprint
    folder.mkdir(parents=True, exist_ok=True)
    previous = _manifest(folder)
    files = dict(previous.get("files", {}))  # another method's layers stay in the bundle
    for file_name, mom2 in moments.items():
        size = mom2.shape[0]
        rows, cols = torch.triu_indices(size, size)
        path = folder / file_name
        save_file({"upper": mom2.float()[rows, cols].contiguous()}, str(path))
        files[file_name] = {"sha256": _sha256(path), "size": size}
    commands = previous.get("reproduce", [])
    commands = [commands] if isinstance(commands, str) else commands
    manifest = {"model_fingerprint": fingerprint, "tokens": tokens,
                "reproduce": sorted({*commands, command}), "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return folder
