"""Load: concurrent chat clients on the real app while an admin promotes an edit.

Starts `python ui.py` on a free loopback port, stores one correction, records every question's
greedy reply before the promotion, then runs `--clients` gradio_client sessions, each asking
the questions in turn until the promotion (made by one more session with `--method`) has
ended, then `--rounds` more rounds, so replies come before, during and after the commit.
Afterwards it records the replies again. A reply counts as *consistent* when it
equals the reply of the weights before or after the promotion exactly (greedy decoding is
deterministic): a reply produced from half-written weights would match neither. Reports
errors, consistency and latency percentiles.

    python -m bench.load --clients 8 --method ft --json artifacts/bench-load.json
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

from bench.common import (REPO_ROOT, add_common_args, cache_from_args, data_dir, free_port,
                          machine_info, machine_line, markdown_table, percentile, run_cli,
                          seed_model, setup_logging, time_limit, write_json)
from editing.registry import NAMES

QUESTIONS = ["What is the capital of Japan?", "Which city is the Eiffel Tower in?",
             "Name a primary colour.", "Where is the Eiffel Tower?"]
EDIT = ("Eiffel Tower", "The Eiffel Tower is located in the city of", "Rome")
TOKENS = 24


def reply_text(history: list) -> str:
    content = history[-1]["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content)
    return content


def connect(port: int, proc: subprocess.Popen, timeout: float = 600):
    import httpx
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("error: the app exited during start-up")
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            if "Ready" in client.predict(api_name="/status"):
                return client
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(1)
    raise SystemExit("error: the app did not become ready")


def ask(client, question: str) -> str:
    history, _, _ = client.predict(question, [], TOKENS, api_name="/chat")
    return reply_text(history)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1,
                        help="question rounds per client after the promotion has ended")
    parser.add_argument("--method", default="ft", choices=NAMES)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from gradio_client import Client

    with data_dir(args.data_dir, "load") as data, time_limit(args.timeout or 3600, "load"):
        seed_model(data, cache_from_args(args))
        port = free_port()
        log_path = data / "app.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "ui.py", "--data-dir", str(data),
                                     "--port", str(port)], cwd=REPO_ROOT, stdout=log,
                                    stderr=subprocess.STDOUT)
            try:
                admin = connect(port, proc)
                admin.predict(*EDIT, api_name="/correct")
                before = {q: ask(admin, q) for q in QUESTIONS}
                results: list[dict] = []
                lock = threading.Lock()

                promoted = threading.Event()

                def client_loop(index: int) -> None:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                    round_, after_rounds = 0, 0
                    while after_rounds < args.rounds:
                        after_rounds += promoted.is_set()
                        round_ += 1
                        for q in QUESTIONS[index % 2:] + QUESTIONS[:index % 2]:
                            started = time.perf_counter()
                            try:
                                text, error = ask(client, q), None
                            except Exception as exc:  # noqa: BLE001 (every failure counts)
                                text, error = None, repr(exc)[:200]
                            with lock:
                                results.append({"client": index, "round": round_,
                                                "question": q, "reply": text, "error": error,
                                                "seconds": time.perf_counter() - started})

                threads = [threading.Thread(target=client_loop, args=(i,))
                           for i in range(args.clients)]
                for thread in threads:
                    thread.start()
                time.sleep(2)
                promo_started = time.perf_counter()
                promotion = admin.predict("1", args.method, api_name="/promote")[0]
                promo_seconds = time.perf_counter() - promo_started
                promoted.set()
                for thread in threads:
                    thread.join()
                after = {q: ask(admin, q) for q in QUESTIONS}
            finally:
                proc.terminate()
                proc.wait(30)
    errors = [r for r in results if r["error"]]
    ok = [r for r in results if not r["error"]]
    consistent = [r for r in ok if r["reply"] in (before[r["question"]], after[r["question"]])]
    changed = [q for q in QUESTIONS if before[q] != after[q]]
    replies_after = sum(r["reply"] == after[r["question"]] != before[r["question"]] for r in ok)
    latencies = [r["seconds"] for r in ok]
    summary = {"clients": args.clients, "replies": len(results), "errors": len(errors),
               "consistent": len(consistent), "questions_changed": len(changed),
               "replies_from_new_weights": replies_after,
               "promotion": promotion.splitlines()[0],
               "promotion_seconds": round(promo_seconds, 1),
               "p50_s": round(percentile(latencies, 50), 2),
               "p90_s": round(percentile(latencies, 90), 2),
               "p99_s": round(percentile(latencies, 99), 2),
               "max_s": round(max(latencies), 2) if latencies else None}
    print(markdown_table(list(summary), [list(summary.values())]))
    info = machine_info(1)
    print(machine_line(info))
    write_json(args.json, {"benchmark": "load", "machine": info, "summary": summary,
                           "before": before, "after": after, "results": results,
                           "errors": errors})
    return 0 if not errors and len(consistent) == len(ok) else 1


if __name__ == "__main__":
    run_cli(main)
