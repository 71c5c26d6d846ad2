"""Key statistics shipped with the code for the default model, so the first ROME promotion on
a fresh install starts editing at once instead of sampling text and reading it (minutes).

The bundle (`editing/data/stats/<model fingerprint>/`) holds C for the layers a config names,
stored as the upper triangle in float32 (C is symmetric; float16 would move its small
eigen-directions, which the solve C^-1 k reads), with a manifest of checksums and the command
that reproduces it. A file whose checksum does not match is ignored and C is computed as
before. Reproduce (or refresh after changing a config): `python -m editing.shipped_stats
--method rome`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
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


def main(argv: list[str] | None = None) -> None:
    from assistant.llm import ChatLLM
    from config import default_data_dir
    from editing.covariance import cache_file_name, config_moments
    from editing.deltas import model_fingerprint
    from editing.hparams import load_method_config

    parser = argparse.ArgumentParser(description="Compute and write the shipped key "
                                     "statistics of the default model for one method.")
    parser.add_argument("--method", choices=["rome", "memit"], default="rome")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    llm = ChatLLM.load(None, default_data_dir())
    fingerprint = model_fingerprint(llm.model)
    cfg = load_method_config(args.method, llm.family, llm.model, None)
    layers = list(getattr(cfg, "layers", None) or [cfg.layer])
    names = [cfg.module_template.format(layer) for layer in layers]
    with tempfile.TemporaryDirectory() as scratch:  # computed afresh, never from the bundle
        moments = config_moments(llm.model, llm.tokenizer, names, cfg, Path(scratch),
                                 fingerprint, shipped=False)
        files = {cache_file_name(name, cfg): mom2 for name, mom2 in moments.items()}
    folder = write_bundle(files, fingerprint, cfg.covariance_tokens + cfg.covariance_fact_tokens,
                          f"python -m editing.shipped_stats --method {args.method}")
    print(f"wrote {len(files)} file(s) to {folder}")


if __name__ == "__main__":
    main()
