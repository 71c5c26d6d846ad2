"""The command line behind `python ui.py`: flags into `AppSettings`, then load and serve.

The models start loading in a background thread before Gradio is even imported (imports are
most of a warm start), so this module imports nothing of Gradio's: `main` imports the page
only once the loader runs. The page is served as soon as it is built, and its status line
says how far loading got. Errors become CLI messages here.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from assistant.access import admin_access, is_shared, write_password
from assistant.runtime import Runtime, check_model_path, check_store_url
from config import STORE_URL_ENV, AppSettings, default_data_dir, default_store_url
from errors import AmendError

log = logging.getLogger("amend")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Amend: a chat assistant whose facts you "
                                                 "can correct (local Gradio app).")
    parser.add_argument("--model", type=Path, default=None,
                        help="a Hugging Face causal-LM folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"where edits and models are kept (default: {default_data_dir()}, "
                             "or $AMEND_DATA_DIR)")
    parser.add_argument("--store-url", default=None, metavar="URL",
                        help="keep the edits in this PostgreSQL database "
                             "(postgresql://user:password@host:port/db), shared by every "
                             f"instance given it (default: ${STORE_URL_ENV}, else the SQLite "
                             "file in the data dir)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 is fastest on 2-core machines)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--engine", choices=["llama.cpp", "torch"], default=None,
                        help="who decodes chat replies (default: the model's chat config, "
                             "llama.cpp; torch where llama.cpp cannot serve)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="reply length limit (default: the model's chat config)")
    parser.add_argument("--shared", action="store_true",
                        help="shared mode even on 127.0.0.1 (on by itself for any other host): "
                             "admin password required, chat corrections wait for approval")
    parser.add_argument("--promotion-config", type=Path, default=None,
                        help="the promotion guard's thresholds as JSON (default: "
                             "configs/promotion.json)")
    parser.add_argument("--set-admin-password", action="store_true",
                        help="ask for the admin password, store its hash in the data dir, exit")
    return parser


def settings_from(args: argparse.Namespace) -> AppSettings:
    return AppSettings(data_dir=(args.data_dir or default_data_dir()).expanduser(),
                       model_path=args.model, threads=max(1, args.threads), host=args.host,
                       port=args.port, max_new_tokens=args.max_new_tokens,
                       shared=is_shared(args.host, args.shared),
                       promotion_config=args.promotion_config, engine=args.engine,
                       store_url=args.store_url or default_store_url())


def parse_args(argv: list[str] | None = None) -> AppSettings:
    return settings_from(_parser().parse_args(argv))


def set_password_interactively(data_dir: Path) -> int:
    import getpass

    first = getpass.getpass("New admin password: ")
    if first != getpass.getpass("Repeat it: "):
        print("error: the two entries differ; nothing changed", file=sys.stderr)
        return 2
    try:
        path = write_password(data_dir, first)
    except AmendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Stored the admin password's hash in {path}")
    return 0


def build_app_in_loader(settings: AppSettings, progress):
    """The app with its weight edits (editing.startup.build_app), imported here, in the loader
    thread, so torch and transformers load after the page is served."""
    from editing.startup import build_app

    return build_app(settings, progress)


def main(argv: list[str] | None = None, started_at: float | None = None) -> int:
    """Run the app until interrupted; `started_at` (a time.perf_counter() reading, default
    now) is when the process started, which the start-up times in the log count from."""
    started_at = time.perf_counter() if started_at is None else started_at
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    settings = settings_from(args)
    if args.set_admin_password:
        return set_password_interactively(settings.data_dir)
    try:
        check_model_path(settings.model_path)
        check_store_url(settings.store_url)
        access = admin_access(settings.data_dir, settings.shared)
    except AmendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app phones no one
    runtime = Runtime(settings, build=build_app_in_loader, started_at=started_at)
    loader = runtime.start_in_background()
    from amend_ui.openai_api import ChatAPI
    from amend_ui.page import build_ui, launch_options  # Gradio: once the models load

    demo = build_ui(runtime, access)
    demo.queue(default_concurrency_limit=1)
    # The OpenAI-compatible API (/v1/...) goes in as routes of the FastAPI app that launch
    # creates (app_kwargs are its constructor's arguments): same process and port, in place
    # before the server accepts its first request, ahead of Gradio's own routes.
    demo.launch(server_name=settings.host, server_port=settings.port, prevent_thread_lock=True,
                ssr_mode=False, quiet=True, app_kwargs={"routes": ChatAPI(runtime).routes()},
                **launch_options())
    log.info("Page served at http://%s:%d (%.1f s after start); OpenAI-compatible API at "
             "/v1", settings.host, settings.port, time.perf_counter() - started_at)
    loader.join()
    if runtime.error:
        log.error("Start-up failed: %s (the page stays up to show it)", runtime.error)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        demo.close()
    return 0
