"""Helpers shared by the benchmark scripts: ports, data folders, the converted-model cache,
time limits, statistics, tables and machine descriptions.

Nothing here talks to the network except loopback. Scripts import project modules lazily
(after `set_threads`) so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.llm import ChatLLM

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(REPO_ROOT))

# Loopback only: no hub look-ups or telemetry from the libraries the app uses.
for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}.items():
    os.environ.setdefault(_key, _value)

MODEL_FOLDER = "SmolLM2-135M-Instruct"  # assistant.llm.DEFAULT_FOLDER, without importing torch
CACHE_ENV = "AMEND_BENCH_MODEL_CACHE"

log = logging.getLogger("bench")


# -- process-wide settings -------------------------------------------------------------------
def set_threads(threads: int = 1) -> None:
    """One torch thread, as the app uses by default (two stall on 2-core machines)."""
    import torch

    torch.set_num_threads(max(1, threads))


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    logging.getLogger("bench.app").setLevel(logging.INFO if verbose else logging.WARNING)
    # The app warns when it builds an index in a fresh folder: expected here.
    logging.getLogger("assistant.memory").setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    for noisy in ("httpx", "httpcore", "urllib3", "transformers",
                  "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_common_args(parser: argparse.ArgumentParser, cache: bool = True) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data folder to use (default: a fresh temporary folder, deleted "
                             "afterwards)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write the results as JSON to OUT")
    if cache:
        parser.add_argument("--model-cache", type=Path, default=None,
                            help="folder keeping the converted model between runs so a fresh "
                                 "data folder need not convert the GGUF again (default: "
                                 f"${CACHE_ENV}, or amend-bench-model-cache in the temp folder)")
        parser.add_argument("--no-model-cache", action="store_true",
                            help="neither read nor fill the converted-model cache")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up after this many seconds in all (default: per script)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the app's log")


# -- ports and folders -----------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def data_dir(given: Path | None, prefix: str) -> Iterator[Path]:
    """`given` (created if needed, kept), or a fresh temporary folder (deleted afterwards)."""
    if given is not None:
        path = Path(given).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=f"amend-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(tempfile.gettempdir()) / "amend-bench-model-cache"


def _gguf_signature() -> dict[str, Any] | None:
    """Size and mtime of the bundled GGUF, so a cache made from another file is not reused."""
    try:
        from assistant.llm import default_gguf_path

        path = default_gguf_path()
    except Exception:  # noqa: BLE001 - no package: the app will say so itself
        return None
    st = path.stat()
    # resolved: a git worktree whose .venv is a symlink to another checkout's reuses its cache
    return {"gguf": str(path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


def _model_complete(folder: Path) -> bool:
    return (folder / "config.json").exists() and (folder / "model.safetensors").exists()


def _copy_tree(src: Path, dst: Path) -> None:
    """Hard links where the file system allows (instant, no extra space), else copies."""
    partial = dst.with_name(dst.name + ".bench-partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(src, partial, copy_function=os.link)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(src, partial)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(partial, dst)


def seed_model(data: Path, cache: Path | None) -> bool:
    """Put the cached converted model into data/models; True when it was there to use."""
    if cache is None:
        return False
    src = cache / MODEL_FOLDER
    dst = data / "models" / MODEL_FOLDER
    if _model_complete(dst):
        return True
    meta = cache / "SOURCE.json"
    if not _model_complete(src) or not meta.exists():
        return False
    try:
        if json.loads(meta.read_text(encoding="utf-8")) != _gguf_signature():
            log.info("model cache %s was made from another GGUF; not using it", cache)
            return False
    except (OSError, ValueError):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    _copy_tree(src, dst)
    log.info("seeded %s from the model cache %s", dst, cache)
    return True


def fill_cache(data: Path, cache: Path | None) -> None:
    """After a run converted the model in `data`, keep a copy for the next fresh folder."""
    if cache is None:
        return
    src = data / "models" / MODEL_FOLDER
    if not _model_complete(src) or _model_complete(cache / MODEL_FOLDER):
        return
    cache.mkdir(parents=True, exist_ok=True)
    _copy_tree(src, cache / MODEL_FOLDER)
    (cache / "SOURCE.json").write_text(json.dumps(_gguf_signature()), encoding="utf-8")
    log.info("filled the model cache %s", cache)


def cache_from_args(args: argparse.Namespace) -> Path | None:
    if getattr(args, "no_model_cache", False):
        return None
    return Path(args.model_cache).expanduser() if args.model_cache else default_cache_dir()


def quiet_progress_bars() -> None:
    """No per-text "Embedding" bar from index rebuilds (it floods a non-terminal log)."""
    import assistant.embedder as embedder_module

    if hasattr(embedder_module, "tqdm"):
        embedder_module.tqdm = lambda items, *args, **kwargs: items


def build_assistant_in(data: Path, cache: Path | None, threads: int = 1,
                       quiet: bool = True):
    """The in-process Assistant on `data` (seeding/filling the model cache); (assistant, s)."""
    set_threads(threads)
    from editing.startup import build_app
    from config import AppSettings

    if quiet:
        quiet_progress_bars()

    seed_model(data, cache)
    started = time.perf_counter()
    assistant = build_app(AppSettings(data_dir=data, threads=threads),
                                progress=logging.getLogger("bench.app").info)
    seconds = time.perf_counter() - started
    set_threads(threads)  # build_assistant sets it too; keep ours authoritative
    fill_cache(data, cache)
    return assistant, seconds


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --json of the scripts that edit the default model in a data folder."""
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data folder holding the converted model and key statistics "
                             "(default: the app's)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write the results as JSON to OUT")


def load_default_model(given: Path | None) -> tuple[ChatLLM, Path]:
    """(the default base model as a ChatLLM, its data folder): converted there on first use."""
    from assistant.llm import ChatLLM
    from config import default_data_dir

    root = Path(given or default_data_dir())
    return ChatLLM.load(None, root), root


# -- time limits -----------------------------------------------------------------------------
class BenchTimeout(BaseException):
    """A BaseException, like KeyboardInterrupt, so library `except Exception` blocks that run
    while the alarm fires cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str = "benchmark") -> Iterator[None]:
    """Raise BenchTimeout in the main thread after `seconds` (Unix; no-op without SIGALRM)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _expired(signum, frame):  # noqa: ARG001
        raise BenchTimeout(f"{what} took longer than {seconds:.0f} s (raise --timeout)")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)  # fires again each second until it lands
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- statistics ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- output ----------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine_info(threads: int | None = 1) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if threads is not None:
        info["torch_threads"] = threads
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['date']}, {info['cpu']} ({info['cores']} cores), python {info['python']}"
            + (f", torch {info['torch']}" if "torch" in info else "")
            + (f", {info['torch_threads']} torch thread(s)" if "torch_threads" in info else "")
            + (f", load {info['load_avg_1m']}" if "load_avg_1m" in info else ""))


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")


def run_cli(main, errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run a benchmark's main(): its exit code, or 1 with a one-line error for a time-out or
    one of `errors`."""
    try:
        sys.exit(main())
    except (BenchTimeout, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
