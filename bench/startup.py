"""Start-up time of the Gradio app, measured from outside as a person would see it.

Spawns `python ui.py --data-dir DIR --port PORT` and measures, from the moment of the spawn:
  * page served: seconds until `GET /` answers 200;
  * ready:       seconds until the `/status` endpoint (via gradio_client) says "Ready", i.e.
                 the models are loaded and a chat message would be answered.
A cold start uses an empty data folder (it includes the one-time GGUF -> safetensors
conversion); warm starts reuse the same folder. The app's own log lines ("Page served ... (X s
after start)", "Ready (X s after start)") are parsed too; they count from the top of ui.py.

    python -m bench.startup --runs 3 --json artifacts/bench-startup.json
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    MODEL_FOLDER,
    REPO_ROOT,
    BenchTimeout,
    add_common_args,
    cache_from_args,
    data_dir,
    fill_cache,
    free_port,
    machine_info,
    machine_line,
    markdown_table,
    median,
    run_cli,
    seed_model,
    setup_logging,
    write_json,
)

HOST = "127.0.0.1"
POLL_S = 0.05
READY_PREFIX = "**Status:** Ready"
ERROR_PREFIX = "**Status:** Error"
PAGE_RE = re.compile(r"Page served at \S+ \(([\d.]+) s after start\)")
READY_RE = re.compile(r"Ready \(([\d.]+) s after start\)")

# No telemetry or hub look-ups from the app or the client: loopback only.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "PYTHONUNBUFFERED": "1"}


class StartError(RuntimeError):
    pass


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_alive(proc: subprocess.Popen, log_path: Path) -> None:
    if proc.poll() is not None:
        raise StartError(f"ui.py exited with code {proc.returncode} before it was ready:\n"
                         f"{_log_tail(log_path)}")


def wait_page(url: str, proc: subprocess.Popen, log_path: Path, t0: float,
              deadline: float) -> float:
    """Seconds from spawn until GET / returns 200."""
    opener = _no_proxy_opener()
    while True:
        _check_alive(proc, log_path)
        try:
            with opener.open(url + "/", timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.perf_counter() > deadline:
            raise BenchTimeout(f"no page at {url} within the time limit:\n{_log_tail(log_path)}")
        time.sleep(POLL_S)


def wait_ready(url: str, proc: subprocess.Popen, log_path: Path, t0: float,
               deadline: float) -> tuple[float, str]:
    """Seconds from spawn until /status says Ready (and the status text)."""
    from gradio_client import Client

    client = Client(url + "/", verbose=False, analytics_enabled=False, download_files=False)
    try:
        while True:
            _check_alive(proc, log_path)
            status = str(client.predict(api_name="/status"))
            if status.startswith(READY_PREFIX):
                return time.perf_counter() - t0, status
            if status.startswith(ERROR_PREFIX):
                raise StartError(f"the app reported an error: {status}\n{_log_tail(log_path)}")
            if time.perf_counter() > deadline:
                raise BenchTimeout(f"not ready within the time limit (last: {status})")
            time.sleep(POLL_S)
    finally:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Terminate, then kill if it does not go; only this process, by its id."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


def one_start(data: Path, kind: str, timeout_s: float, log_dir: Path) -> dict[str, Any]:
    """Spawn the app once on `data`, measure page and ready times, stop it."""
    port = free_port(HOST)
    url = f"http://{HOST}:{port}"
    log_path = log_dir / f"ui-{kind}-{port}.log"
    had_model = (data / "models" / MODEL_FOLDER / "model.safetensors").exists()
    cmd = [sys.executable, str(REPO_ROOT / "ui.py"), "--data-dir", str(data), "--port",
           str(port)]
    env = {**os.environ, **OFFLINE_ENV}
    with open(log_path, "w", encoding="utf-8") as log_file:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = t0 + timeout_s
            page_s = wait_page(url, proc, log_path, t0, deadline)
            ready_s, status = wait_ready(url, proc, log_path, t0, deadline)
        finally:
            stop(proc)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    page_app = PAGE_RE.search(text)
    ready_app = READY_RE.search(text)
    return {
        "kind": kind,
        "converted_model_present": had_model,
        "page_s": round(page_s, 3),
        "ready_s": round(ready_s, 3),
        "app_page_s": float(page_app.group(1)) if page_app else None,
        "app_ready_s": float(ready_app.group(1)) if ready_app else None,
        "status": status,
        "port": port,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.startup",
        description="Seconds from spawning ui.py until the page is served and until the chat is "
                    "ready, for a cold start (empty data folder: converts the model) and warm "
                    "starts (same folder again).")
    parser.add_argument("--runs", type=int, default=3, help="warm starts to time (median shown)")
    parser.add_argument("--no-cold", action="store_true",
                        help="skip the cold start: seed the data folder from the model cache "
                             "(if the cache is empty, the first start still converts and is "
                             "reported as cold)")
    add_common_args(parser)
    parser.set_defaults(timeout=300.0)
    parser.epilog = "--timeout applies to each start (default 300 s)."
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    cache = cache_from_args(args)
    runs: list[dict[str, Any]] = []
    with data_dir(args.data_dir, "startup") as data, data_dir(None, "startup-logs") as log_dir:
        model_file = data / "models" / MODEL_FOLDER / "model.safetensors"
        if args.no_cold:
            seed_model(data, cache)
        if model_file.exists() and not args.no_cold:
            print(f"note: {data} already holds a converted model; no cold start measured "
                  "(use an empty --data-dir or none)", file=sys.stderr)
        plan = [] if model_file.exists() else ["cold"]
        plan += ["warm"] * max(0, args.runs)
        for i, kind in enumerate(plan, 1):
            result = one_start(data, kind, args.timeout, log_dir)
            runs.append(result)
            print(f"  run {i}/{len(plan)} {kind}: page {result['page_s']:.2f} s, "
                  f"ready {result['ready_s']:.2f} s", file=sys.stderr, flush=True)
            if kind == "cold":
                fill_cache(data, cache)
        if args.verbose:
            for path in sorted(log_dir.glob("*.log")):
                print(f"--- {path.name}\n{path.read_text(encoding='utf-8', errors='replace')}",
                      file=sys.stderr)

    info = machine_info(threads=1)
    summary: dict[str, Any] = {}
    rows = []
    for kind in ("cold", "warm"):
        these = [r for r in runs if r["kind"] == kind]
        if not these:
            continue
        agg = "median" if len(these) > 1 else "single"
        page = median([r["page_s"] for r in these])
        ready = median([r["ready_s"] for r in these])
        app_page = median([r["app_page_s"] for r in these if r["app_page_s"] is not None])
        app_ready = median([r["app_ready_s"] for r in these if r["app_ready_s"] is not None])
        summary[kind] = {"runs": len(these), "page_s": page, "ready_s": ready,
                         "app_page_s": app_page, "app_ready_s": app_ready}
        rows.append([f"{kind} start ({agg} of {len(these)})", page, ready, app_page, app_ready])
    print()
    print(markdown_table(["start", "page served (s)", "ready (s)", "app log: page (s)",
                          "app log: ready (s)"], rows))
    print(f"\n{machine_line(info)}")
    print("times count from spawning ui.py; the app-log columns count from the top of ui.py "
          "(before its imports)")
    if "warm" in summary:
        warm = summary["warm"]
        ok = warm["page_s"] <= 5.0
        print(f"target: warm start <= 5 s to a ready page: {'met' if ok else 'NOT met'} "
              f"(page served {warm['page_s']:.2f} s; chat ready {warm['ready_s']:.2f} s)")
    write_json(args.json, {"benchmark": "startup", "machine": info, "summary": summary,
                           "runs": runs, "argv": sys.argv[1:] if argv is None else argv})
    return 0


if __name__ == "__main__":
    run_cli(main, (StartError,))
