"""Start-up: open the store, load the models, build the Assistant, report progress.

The UI serves its page first and calls `Runtime.start()` in a background thread, so a person
sees the page (with a loading status) at once; chat handlers wait on `Runtime.wait_ready()`.
What the Runtime builds is its `build` function: `build_assistant` here (ask and correct), or
`editing.startup.build_app`, which adds the weight edits on top (imports go one way).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from assistant.adapter import Adapter
from config import REPO_ROOT, AppSettings, counterfactual_config, router_config
from errors import AmendError, ModelNotFoundError, StoreError

log = logging.getLogger(__name__)

DB_NAME = "amend.db"
INDEX_NAME = "edits.faiss"


def check_model_path(path: Path | None) -> None:
    """Fail fast, before any server starts, on a --model path that cannot be a model."""
    if path is None:
        return
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"model path does not exist: {path}")
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"{path} is not a Hugging Face model folder (no config.json)")


def store_location(settings: AppSettings):
    """The store the app opens: the --store-url database, else the SQLite file in the data
    dir."""
    return settings.store_url or Path(settings.data_dir) / DB_NAME


def check_store_url(url: str | None) -> None:
    """Fail fast, before any server starts, on a --store-url that is not a PostgreSQL URL or
    whose server cannot be reached (the message names it without its password)."""
    if url is None:
        return
    from store.backend import URL_SCHEMES, is_store_url, open_store

    if not is_store_url(url):
        raise StoreError(f"--store-url takes a URL starting with {' or '.join(URL_SCHEMES)} "
                         "(leave it out to keep the edits in the data dir's SQLite file)")
    open_store(url).close()  # connects, and migrates a new database


def build_assistant(settings: AppSettings, progress: Callable[[str], None] = log.info):
    """Everything the chat needs, loaded in order of increasing cost."""
    import torch  # heavy imports happen here, in the loader thread

    from assistant.embedder import Embedder
    from assistant.llm import ChatLLM
    from assistant.memory import EditMemory
    from assistant.router import Assistant
    from store.backend import describe_location, open_store

    torch.set_num_threads(settings.threads)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    location = store_location(settings)
    progress(f"Opening the store in {describe_location(location)}")
    store = open_store(location)
    progress("Loading the embedding model")
    config = router_config()
    embedder = Embedder(int8=config.embedding_int8)
    memory = EditMemory(store, embedder, data_dir / INDEX_NAME)
    if memory.rebuilt_reason:
        progress(f"Rebuilt the edit index ({memory.rebuilt_reason})")
    progress("Loading the base model" if settings.model_path else
             "Loading the base model (the first start converts it, about 20 s)")
    llm = ChatLLM.load(settings.model_path, data_dir)
    if settings.max_new_tokens:
        llm.config = replace(llm.config, max_new_tokens=settings.max_new_tokens)
    adapter = load_counterfactual_adapter(llm.model, llm.family, progress)
    assistant = Assistant(llm, embedder, store, memory, config, adapter=adapter)
    assistant.shared = settings.shared
    # a shared (PostgreSQL) store: other instances' changes refresh this one's edit index
    if store.watch(assistant.refresh_memory) is not None:
        progress("Listening for other instances' edits")
    return assistant


def load_counterfactual_adapter(model, family: str, progress: Callable[[str], None] = log.info):
    """The trained counterfactual adapter for this model family, if one is shipped."""
    cfg = counterfactual_config(family)
    if cfg is None or not (REPO_ROOT / cfg.weights).exists():
        progress(f"No counterfactual adapter for '{family}': the base model answers edits")
        return None
    adapter = Adapter(model, cfg.adapter_pattern, cfg.rank, cfg.alpha)
    adapter.load(REPO_ROOT / cfg.weights)
    return adapter


@dataclass
class Runtime:
    """The loaded assistant, or why it is not there yet."""

    settings: AppSettings
    build: Callable[..., object] = build_assistant  # (settings, progress) -> the assistant
    status: str = "Starting…"
    error: str | None = None
    assistant: object | None = None
    started_at: float = field(default_factory=time.perf_counter)
    ready_seconds: float | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _jobs: dict[object, str] = field(default_factory=dict)
    _jobs_lock: threading.Lock = field(default_factory=threading.Lock)

    def _progress(self, message: str) -> None:
        self.status = message
        log.info(message)

    @contextmanager
    def activity(self, what: str, log_steps: bool = True) -> Iterator[Callable[[str], None]]:
        """Long work (a promotion, a trace) reported in one place: the status line reads
        "<what>: <latest step>" while it runs, each step goes to the log as the command line
        shows it (unless the work logs its steps itself), and the line says Ready again,
        naming what finished, when it ends."""
        key = object()  # held by the dict while the job runs

        def report(step: str) -> None:
            if log_steps:
                log.info("%s: %s", what, step)
            with self._jobs_lock:
                self._jobs[key] = f"{what}: {step}"
                self.status = "; ".join(self._jobs.values())

        report("starting")
        outcome = "failed"
        try:
            yield report
            outcome = "done"
        finally:
            with self._jobs_lock:
                self._jobs.pop(key, None)
                self.status = "; ".join(self._jobs.values()) or (
                    f"Ready. Last: {what} ({outcome} at {time.strftime('%H:%M:%S')})")

    def start(self) -> None:
        try:
            self.assistant = self.build(self.settings, self._progress)
            self.ready_seconds = time.perf_counter() - self.started_at
            engine = getattr(getattr(self.assistant, "llm", None), "engine_note", "torch")
            self._progress(f"Ready ({self.ready_seconds:.1f} s after start) · chat replies by "
                           f"{engine}")
        except AmendError as exc:
            self.error = str(exc)
            self._progress(f"Error: {exc}")
        except Exception as exc:  # keep the page up and say what broke
            log.exception("start-up failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self._progress(f"Error: {self.error}")
        finally:
            self._ready.set()

    def start_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.start, name="amend-loader", daemon=True)
        thread.start()
        return thread

    def wait_ready(self, timeout: float | None = None):
        """The Assistant, once loaded; raises AmendError if loading failed or timed out."""
        if not self._ready.wait(timeout):
            raise AmendError(f"still loading: {self.status}")
        if self.assistant is None:
            raise AmendError(f"the assistant could not start: {self.error}")
        return self.assistant
