"""Compute the key statistics of the default model for one method and write them into the
shipped bundle (editing/stats_bundle.py):

    python -m editing.shipped_stats --method rome
    python -m editing.shipped_stats --method memit
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch

from assistant.llm import ChatLLM
from config import default_data_dir
from editing.covariance import cache_file_name, config_moments
from editing.deltas import model_fingerprint
from editing.hparams import edited_modules
from editing.registry import METHODS, load_method_config
from editing.stats_bundle import write_bundle
from errors import run_command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compute and write the shipped key "
                                     "statistics of the default model for one method.")
    parser.add_argument("--method", default="rome", choices=[
        name for name, m in METHODS.items() if m.prepares == "key statistics"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    llm = ChatLLM.load(None, default_data_dir())
    fingerprint = model_fingerprint(llm.model)
    cfg = load_method_config(args.method, llm.family, llm.model, None)
    names = edited_modules(cfg)
    with tempfile.TemporaryDirectory() as scratch:  # computed afresh, never from the bundle
        moments = config_moments(llm.model, llm.tokenizer, names, cfg, Path(scratch),
                                 fingerprint, shipped=False)
        files = {cache_file_name(name, cfg): mom2 for name, mom2 in moments.items()}
    folder = write_bundle(files, fingerprint, cfg.covariance_tokens + cfg.covariance_fact_tokens,
                          f"python -m editing.shipped_stats --method {args.method}")
    print(f"wrote {len(files)} file(s) to {folder}")


if __name__ == "__main__":
    run_command(main)
