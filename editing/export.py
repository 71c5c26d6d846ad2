"""Export the live weights (base model + committed weight edits, applied in order) so other
tools can run the corrected model without Amend:

    python -m editing.export --format hf|gguf --out DIR [--gguf-type T] [--data-dir D]
                             [--model PATH]

`hf`: a Hugging Face folder, safetensors weights and config (`save_pretrained`) and the
tokenizer with its chat template, for transformers or vLLM. `gguf`: one GGUF file for llama.cpp
(f32, f16, q8_0 or q4_1; see editing/gguf_file.py). Both folders hold `amend-manifest.json`:
which weight edits the weights contain, the base model's fingerprint and the exact checksum of
the exported weights (the GGUF also carries it under `amend.manifest`). The data dir is only
read (the store opened read only, no orphan delta deleted), so it is safe beside a running app.
The folder is written as DIR.partial and renamed when complete: a failed export leaves no DIR.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from assistant.llm import DEFAULT_FOLDER, ChatLLM
from assistant.runtime import DB_NAME, check_model_path
from config import STORE_URL_ENV, default_data_dir, default_store_url
from editing.deltas import WeightState, own_weights, weights_checksum
from editing.gguf_file import QTYPES, GGUFExportError, write_gguf
from editing.promote import WeightEdits
from errors import AmendError, EditNotFoundError, run_command
from store.backend import describe_location, open_store
from store.db import Store

log = logging.getLogger(__name__)

MANIFEST = "amend-manifest.json"
MANIFEST_VERSION = 1
FORMATS = ("hf", "gguf")
DEFAULT_GGUF_TYPE = "f16"  # the chat engine's type: the export answers as the app does
Progress = Callable[[str], None]


class ExportError(AmendError):
    """The export cannot be made: the out folder is in use, the format is not built, the
    data dir holds no model or store, or the disk refused the files."""


def check_out(out: Path) -> None:
    """Refuse an out path that holds anything: an export never mixes with other files."""
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not empty; choose a new folder or "
                          "remove it")


def _row(store: Store | None, key: object) -> dict | None:
    """The store row of an applied delta (None for one applied outside a promotion)."""
    if store is None or not isinstance(key, int):
        return None
    try:
        return store.get_weight_edit(key)
    except EditNotFoundError:
        return None


def _edit(store: Store, edit_id: int) -> dict:
    try:
        edit = store.get_edit(edit_id)
    except EditNotFoundError:
        return {"id": edit_id, "missing": True}
    return {"id": edit.id, "subject": edit.subject, "prompt": edit.prompt,
            "target_new": edit.target_new, "target_old": edit.target_old}


def build_manifest(llm: ChatLLM, store: Store | None, state: WeightState,
                   messages: list[str] | None = None, fmt: str = "hf") -> dict:
    """What the exported weights are: the base model and every applied delta, in order.
    Call it under the weights lock, so the checksum is of the weights being written."""
    entries = []
    for position, (key, delta) in enumerate(state.applied, 1):
        entry = {"position": position, "id": key, "method": delta.method,
                 "base_fingerprint": delta.base_fingerprint, "parameters": delta.names,
                 "layers": delta.meta.get("layers", [])}
        row = _row(store, key)
        if row is not None:
            entry.update(status=row["status"], delta_path=row["delta_path"],
                         checksum=row.get("checksum"), created_at=row["created_at"],
                         edits=[_edit(store, i) for i in row["edit_ids"]])
        entries.append(entry)
    return {"amend_manifest_version": MANIFEST_VERSION, "format": fmt,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "base_model": {"name": llm.name, "family": llm.family,
                           "fingerprint": state.fingerprint},
            "live_weights_checksum": weights_checksum(llm.model),
            "weight_edits": entries,
            "not_applied": list(messages or []),  # refused at replay, as chat refused them
            "chat": {"system_prompt": llm.config.system_prompt,
                     "stop_tokens": list(llm.config.stop_tokens)}}


def _write_folder(out: Path, fill: Callable[[Path], None], progress: Progress) -> Path:
    """Create `out` all or nothing: `fill` writes into `out`.partial, which is renamed."""
    out = Path(out).expanduser()
    check_out(out)
    partial = out.with_name(out.name + ".partial")
    if partial.is_dir():
        shutil.rmtree(partial)  # left by an export that was killed
    elif partial.exists():
        partial.unlink()
    try:
        partial.mkdir(parents=True)
        fill(partial)
        check_out(out)  # something may have appeared there meanwhile
        if out.is_dir():
            out.rmdir()  # empty: the rename replaces it
        os.replace(partial, out)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ExportError(f"could not write the export to {out}: {exc}") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    progress(f"Wrote {out}")
    return out


def _parts(weights: WeightState | WeightEdits) -> tuple[WeightState, list[str]]:
    if isinstance(weights, WeightEdits):
        return weights.state, weights.messages
    return weights, []


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")


def export_hf(llm: ChatLLM, store: Store | None, weights: WeightState | WeightEdits,
              out: Path, progress: Progress = log.info) -> Path:
    """Write the live weights of `llm` as a Hugging Face folder at `out`; return `out`.

    The weights lock is held for reading while the weights are written, so a promotion or
    rollback cannot change them half-way (replies go on). The model's own weights are saved
    (`own_weights`): a counterfactual adapter wrapped into the model stays out of the export.
    """
    state, messages = _parts(weights)

    def fill(folder: Path) -> None:
        with llm.weights_lock.read():
            manifest = build_manifest(llm, store, state, messages, "hf")
            progress(f"Writing the weights ({len(state.applied)} weight edit(s) applied, "
                     f"checksum {manifest['live_weights_checksum']})")
            llm.model.save_pretrained(folder, state_dict=own_weights(llm.model),
                                      safe_serialization=True)
        progress("Writing the tokenizer and its chat template")
        llm.tokenizer.save_pretrained(folder)
        for weights_file in folder.glob("*.safetensors"):
            weights_file.chmod(0o644)  # the writer makes them private; a model folder is not
        _write_manifest(folder, manifest)

    return _write_folder(out, fill, progress)


def gguf_file_name(llm: ChatLLM, qtype: str) -> str:
    return f"{Path(llm.name).name or 'model'}-{qtype}.gguf"


def export_gguf(llm: ChatLLM, store: Store | None, weights: WeightState | WeightEdits,
                out: Path, qtype: str = DEFAULT_GGUF_TYPE, progress: Progress = log.info,
                template: Path | None = None) -> Path:
    """Write the live weights of `llm` as one GGUF file in the folder `out` (beside the
    manifest); return the file's path. `template`: the GGUF the base model came from, whose
    tokenizer fields are copied (None: built from the tokenizer). Locking as in `export_hf`."""
    if qtype not in QTYPES:
        raise ExportError(f"unknown GGUF type {qtype!r}; choose one of {', '.join(QTYPES)}")
    state, messages = _parts(weights)
    name = gguf_file_name(llm, qtype)

    def fill(folder: Path) -> None:
        with llm.weights_lock.read():
            manifest = build_manifest(llm, store, state, messages, "gguf")
            manifest["gguf"] = {"file": name, "type": qtype}
            progress(f"Writing {name} ({len(state.applied)} weight edit(s) applied, "
                     f"checksum {manifest['live_weights_checksum']})")
            try:
                write_gguf(llm.model, own_weights(llm.model), llm.tokenizer, folder / name,
                           qtype, template=template, manifest=manifest, progress=progress)
            except GGUFExportError as exc:
                raise ExportError(str(exc)) from exc
        _write_manifest(folder, manifest)

    return _write_folder(out, fill, progress) / name


def load_live(data_dir: Path, model_path: Path | None, progress: Progress = log.info,
              store_url: str | None = None) -> tuple[ChatLLM, Store, WeightEdits]:
    """The model chat uses in `data_dir`: the base model loaded as `build_assistant` loads it
    and the committed deltas re-applied by `WeightEdits.replay`, reading only. Not
    `build_app`: that migrates the store, may rebuild the edit index and deletes orphan delta
    files, all writes, and loads the embedder and adapter, which the weights do not need.
    `store_url`: the app's --store-url (a shared PostgreSQL store), opened read only too."""
    data_dir = Path(data_dir).expanduser()
    check_model_path(model_path)
    if model_path is None and not (data_dir / "models" / DEFAULT_FOLDER / "config.json").exists():
        raise ExportError(f"{data_dir} holds no converted default model; start the app on it "
                          "once (python ui.py) or pass --model")
    location = store_url or data_dir / DB_NAME
    progress(f"Opening the store in {describe_location(location)} (read only)")
    store = open_store(location, read_only=True)
    progress("Loading the base model")
    llm = ChatLLM.load(model_path, data_dir)
    weights = WeightEdits(llm, store, None, None, threading.Lock(), data_dir)
    for message in weights.replay(progress, tidy=False):
        progress(message)
    return llm, store, weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m editing.export",
                                     description="Export the live weights (base model + "
                                     "committed weight edits) for other tools.")
    parser.add_argument("--format", choices=FORMATS, default="hf",
                        help="hf: a Hugging Face folder (transformers, vLLM); gguf: one GGUF "
                             "file (llama.cpp)")
    parser.add_argument("--gguf-type", choices=list(QTYPES), default=DEFAULT_GGUF_TYPE,
                        help="how --format gguf stores the weights (default "
                             f"{DEFAULT_GGUF_TYPE}, what the app's chat engine runs; f32 is "
                             "exact; q8_0 is smaller and faster but changes many replies)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to create (must not exist, or be empty)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"the app's data dir (default: {default_data_dir()}, or "
                             "$AMEND_DATA_DIR)")
    parser.add_argument("--model", type=Path, default=None,
                        help="the --model the app runs with (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--store-url", default=None, metavar="URL",
                        help="the --store-url the app runs with (default: "
                             f"${STORE_URL_ENV}, else the SQLite file in the data dir)")
    args = parser.parse_args(argv)
    out = args.out.expanduser()
    check_out(out)  # before minutes of loading
    torch.set_num_threads(1)

    def say(line: str) -> None:
        print(line, flush=True)

    llm, store, weights = load_live(args.data_dir or default_data_dir(), args.model, say,
                                    store_url=args.store_url or default_store_url())
    try:
        if args.format == "gguf":
            export_gguf(llm, store, weights, out, args.gguf_type, say,
                        template=llm.gguf_source)
        else:
            export_hf(llm, store, weights, out, say)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    run_command(main)
