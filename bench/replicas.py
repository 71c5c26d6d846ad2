"""Replicas: what breaks first as users and replicas grow, with every replica on one shared
PostgreSQL store (issue 35; the figures behind docs/SCALING.md).

Starts `python ui.py --store-url URL --data-dir <its own dir> --port P` replicas on loopback
(the URL given with `--store-url`, else a throwaway cluster from `store/pg_cluster.py`, removed
at the end) and measures, each figure with the load average from /proc/loadavg at that point:

1. chat capacity: for each replica count R and client count N, N gradio_client sessions spread
   round-robin over R replicas (a stand-in for a load balancer) ask everyday questions
   (24 new tokens) for `--rounds` rounds: replies, errors, replies/s, latency percentiles.
   A replica serves one chat reply at a time (Gradio's queue, one torch thread), so latency
   grows with N on one replica and a second replica adds throughput while cores are free.
2. correction propagation: a correction stored through replica 0 (`/correct`) until replica 1
   answers a paraphrase from memory (route memory, the new answer in the reply).
3. promotion propagation while serving: N clients chat on replica 1 while replica 0 promotes
   the first fact with `--method` (a lenient guard, given to replica 0 only, so it commits);
   seconds from the promotion returning until replica 1's `/weights_state` equals replica 0's
   (polled every 0.5 s: it hashes all weights), replica 1's own catch-up time from its log,
   and replica 1's chat latency before, during and after. Run with the data dirs sharing one
   `models/` folder (replica 1 reuses the GGUF file replica 0 wrote) and, with `--models
   shared separate`, again on a fresh pair with their own model folders (replica 1 writes its
   own GGUF).

    python -m bench.replicas --json artifacts/s29/replicas.json
    python -m bench.replicas --quick
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import (MODEL_FOLDER, REPO_ROOT, add_common_args, cache_from_args, data_dir,
                          fill_cache, free_port, machine_info, machine_line, markdown_table,
                          percentile, run_cli, seed_model, setup_logging, time_limit,
                          write_json)
from bench.load import reply_text
from editing.registry import NAMES
from store.pg_cluster import start_cluster

QUESTIONS = ["What is the capital of Japan?", "Name a primary colour.",
             "How many days are there in a week?", "What do bees make?",
             "What is the largest planet in the solar system?", "Who wrote Romeo and Juliet?"]
TOKENS = 24
# (subject, question naming it, new answer, the paraphrase another replica is asked)
FACTS = [("Eiffel Tower", "Which city is the Eiffel Tower in?", "Rome",
          "Where is the Eiffel Tower?"),
         ("Louvre", "Which city is the Louvre in?", "Madrid", "Where is the Louvre?"),
         ("Colosseum", "Which city is the Colosseum in?", "Paris", "Where is the Colosseum?"),
         ("Big Ben", "Which city is Big Ben in?", "Berlin", "Where is Big Ben?"),
         ("Statue of Liberty", "Which city is the Statue of Liberty in?", "Tokyo",
          "Where is the Statue of Liberty?")]
SEPARATE_FACT = ("Sydney Opera House", "Which city is the Sydney Opera House in?", "Lisbon",
                 "Where is the Sydney Opera House?")  # promoted by the separate-models pair
# A short, lenient guard for replica 0: this bench times the replay, not the guard's verdict.
LENIENT_GUARD = dict(min_reliability=0.0, min_locality=0.0, min_total_locality=0.0,
                     min_chat_generalization=0.0, min_chat_locality=0.0, locality_probes=8,
                     chat_probes=2, neighbour_questions=1, carry_questions=2)
READY_TIMEOUT_S = 600
CATCH_UP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Weight edits from "
                           r"the shared store: applied (\[[^\]]*\]|none), rolled back .*? "
                           r"\(([\d.]+) s\)", re.M)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [round(x, 2) for x in os.getloadavg()]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text} (load {loadavg()[0]:.2f})", flush=True)


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q), 2)


class Replica:
    """One `python ui.py` on the shared store, its log in its data dir."""

    def __init__(self, index: int, data: Path, url: str, *extra: str) -> None:
        self.index, self.data = index, data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = data / "app.log"
        self._log = open(self.log_path, "w")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "ui.py", "--store-url", url, "--data-dir", str(data),
             "--port", str(self.port), *extra],
            cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = self._connect()
        self.ready_s = time.perf_counter() - started
        self.ask(QUESTIONS[0])  # the first reply loads what is loaded lazily: not timed

    def _connect(self):
        import httpx
        from gradio_client import Client

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.index} exited during start-up:\n"
                                   + self.log_text()[-2000:])
            try:
                client = Client(self.url, verbose=False)
                if "Ready" in client.predict(api_name="/status"):
                    return client
            except (httpx.HTTPError, OSError, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"replica {self.index} was not ready after {READY_TIMEOUT_S} s")

    def new_client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def ask(self, question: str, client=None, tokens: int = TOKENS) -> tuple[str, str]:
        history, _, trace = (client or self.client).predict(question, [], tokens,
                                                            api_name="/chat")
        return reply_text(history), trace

    def weights_state(self) -> str:
        return self.client.predict(api_name="/weights_state")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Chatters:
    """N sessions asking QUESTIONS in turn, session i on replicas[i % R]; each reply recorded
    with its start and end (perf_counter) until `rounds` rounds or `stop()`."""

    def __init__(self, replicas: list[Replica], clients: int, rounds: int | None) -> None:
        self.results: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Barrier(clients + 1)
        self._threads = [threading.Thread(target=self._loop, daemon=True,
                                          args=(i, replicas[i % len(replicas)], rounds))
                         for i in range(clients)]
        for thread in self._threads:
            thread.start()
        self._ready.wait(120)  # every session connected before the clock starts
        self.started = time.perf_counter()

    def _loop(self, index: int, replica: Replica, rounds: int | None) -> None:
        client = replica.new_client()
        self._ready.wait(120)
        order = QUESTIONS[index % len(QUESTIONS):] + QUESTIONS[:index % len(QUESTIONS)]
        round_ = 0
        while (rounds is None or round_ < rounds) and not self._stop.is_set():
            round_ += 1
            for question in order:
                if self._stop.is_set():
                    break
                started = time.perf_counter()
                try:
                    replica.ask(question, client)
                    error = None
                except Exception as exc:  # noqa: BLE001 (every failure counts)
                    error = repr(exc)[:200]
                with self._lock:
                    self.results.append({"client": index, "replica": replica.index,
                                         "question": question, "error": error,
                                         "start": started, "end": time.perf_counter()})

    def join(self) -> float:
        for thread in self._threads:
            thread.join()
        return time.perf_counter() - self.started

    def stop(self) -> float:
        self._stop.set()
        return self.join()


# -- 1. chat capacity --------------------------------------------------------------------
def capacity(replicas: list[Replica], clients: int, rounds: int) -> dict:
    chat = Chatters(replicas, clients, rounds)
    wall = chat.join()
    ok = [r["end"] - r["start"] for r in chat.results if not r["error"]]
    errors = [r["error"] for r in chat.results if r["error"]]
    return {"replicas": len(replicas), "clients": clients, "replies": len(ok),
            "errors": len(errors), "wall_s": round(wall, 2),
            "replies_per_s": round(len(ok) / wall, 3) if wall else None,
            "p50_s": ms(ok, 50), "p90_s": ms(ok, 90), "p99_s": ms(ok, 99),
            "per_replica": {r.index: sum(1 for x in chat.results if x["replica"] == r.index)
                            for r in replicas},
            "load": loadavg(), "error_samples": errors[:3]}


# -- 2. correction propagation -----------------------------------------------------------
def propagation(writer: Replica, reader: Replica, fact: tuple, timeout: float = 30) -> dict:
    subject, question, answer, paraphrase = fact
    before, trace = reader.ask(paraphrase, tokens=16)
    refreshes = reader.log_text().count("Edit index refreshed from the shared store")
    heard: list[float] = []

    def watch_log() -> None:  # when replica 1 logs its index refresh (5 ms resolution)
        while time.perf_counter() < deadline and not heard:
            if reader.log_text().count("Edit index refreshed from the shared store") > refreshes:
                heard.append(time.perf_counter())
            time.sleep(0.005)

    deadline = time.perf_counter() + timeout
    watcher = threading.Thread(target=watch_log, daemon=True)
    watcher.start()
    called = time.perf_counter()
    saved = writer.client.predict(subject, question, answer, api_name="/correct")
    returned = time.perf_counter()
    tries, answered, reply = 0, None, ""
    while time.perf_counter() < deadline:
        tries += 1
        reply, trace = reader.ask(paraphrase, tokens=16)
        if "route: **memory**" in trace and answer in reply:
            answered = time.perf_counter() - returned
            break
    watcher.join()
    return {"subject": subject, "answer": answer, "paraphrase": paraphrase,
            "saved": saved.splitlines()[0] if saved else saved,
            "reader_before": before, "correct_call_s": round(returned - called, 3),
            "index_refreshed_s": round(heard[0] - returned, 3) if heard else None,
            "answered_s": round(answered, 3) if answered is not None else None,
            "tries": tries, "reply": reply, "load": loadavg()}


# -- 3. promotion propagation while serving ----------------------------------------------
def log_time(stamp: str) -> float:
    """The app log's asctime (local time, milliseconds) as epoch seconds."""
    whole, millis = stamp.split(",")
    return time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def promotion(writer: Replica, reader: Replica, fact: tuple, method: str, clients: int,
              before_s: float = 8.0, after_s: float = 6.0, timeout: float = 180) -> dict:
    subject = fact[0]
    edits, _ = writer.client.predict(subject, "all", "all", 0, 0, False, 1, 50,
                                     api_name="/list_edits")
    edit_id = str(edits["data"][0][0])
    say(f"promotion: {clients} client(s) chatting on replica {reader.index}; "
        f"{before_s:.0f} s of chat before replica {writer.index} promotes edit #{edit_id} "
        f"({subject}) with {method}")
    chat = Chatters([reader], clients, None)
    time.sleep(before_s)
    load_before = loadavg()
    promote_start = time.perf_counter()
    message, weights, _ = writer.client.predict(edit_id, method, api_name="/promote")
    promote_end, promote_end_epoch = time.perf_counter(), time.time()
    load_promoted = loadavg()
    committed = [r for r in weights["data"] if r[2] == "committed"]
    say(f"promotion returned after {promote_end - promote_start:.1f} s: "
        f"{message.splitlines()[0][:100]}; polling replica {reader.index}'s weights state")
    target = writer.weights_state()
    caught_up, polls = None, 0
    while time.perf_counter() - promote_end < timeout:
        polls += 1
        if reader.weights_state() == target:
            caught_up = time.perf_counter()
            break
        time.sleep(0.5)
    load_caught = loadavg()
    time.sleep(after_s)
    chat.stop()
    own = CATCH_UP_LINE.findall(reader.log_text())
    reply, trace = reader.ask(fact[3], tokens=16)

    def phase(lo: float, hi: float) -> dict:
        times = [r["end"] - r["start"] for r in chat.results
                 if not r["error"] and lo <= r["start"] < hi]
        return {"replies": len(times), "p50_s": ms(times, 50), "p90_s": ms(times, 90),
                "max_s": round(max(times), 2) if times else None}

    end = caught_up or time.perf_counter()
    return {"edit_id": edit_id, "method": method, "clients": clients,
            "promotion": message.splitlines()[0], "committed": bool(committed),
            "promotion_s": round(promote_end - promote_start, 2),
            "caught_up_s": round(caught_up - promote_end, 2) if caught_up else None,
            "polls": polls, "same_weights": caught_up is not None, "weights_state": target,
            # replica 1's log: what it applied, how long it took, and when it finished
            # relative to the promotion returning (negative: before the call returned)
            "reader_own_catch_up": [{"applied": a, "seconds": float(s),
                                     "done_at_s": round(log_time(t) - promote_end_epoch, 2)}
                                    for t, a, s in own],
            "reader_reply_after": reply, "reader_route_after": trace.split(" · ")[0],
            "phases": {"before": phase(0, promote_start),
                       "promoting": phase(promote_start, promote_end),
                       "catching_up": phase(promote_end, end),
                       "after": phase(end, float("inf"))},
            "replies": sum(1 for r in chat.results if not r["error"]),
            "errors": [r["error"] for r in chat.results if r["error"]],
            "load": {"before": load_before, "promoted": load_promoted,
                     "caught_up": load_caught}}


# -- the run -----------------------------------------------------------------------------
def replica_dirs(root: Path, layout: str, cache: Path | None, count: int) -> list[Path]:
    """Data dirs r0.. under root: with `shared`, each one's `models` is a symlink to one
    folder (as tests/conftest.py data_dir_with_model does), seeded from the model cache;
    with `separate`, each has its own `models/` holding hard links of the converted model
    (from the cache, else from the shared folder) and its own `gguf/`."""
    shared = root / "shared-models"
    if layout == "shared":
        seed_model(shared, cache)
        (shared / "models").mkdir(parents=True, exist_ok=True)
    dirs = []
    for i in range(count):
        path = root / f"{layout}-r{i}"
        path.mkdir(parents=True, exist_ok=True)
        if layout == "shared":
            if not (path / "models").exists():
                os.symlink(shared / "models", path / "models")
        elif not seed_model(path, cache) and (shared / "models" / MODEL_FOLDER).is_dir():
            shutil.copytree(shared / "models" / MODEL_FOLDER, path / "models" / MODEL_FOLDER,
                            copy_function=os.link, dirs_exist_ok=True)
        dirs.append(path)
    return dirs


def start(index: int, data: Path, url: str, guard: Path) -> Replica:
    extra = ("--promotion-config", str(guard)) if index == 0 else ()
    say(f"starting replica {index} ({data.name})")
    replica = Replica(index, data, url, *extra)
    say(f"replica {index} ready on port {replica.port} in {replica.ready_s:.1f} s")
    return replica


def run(args: argparse.Namespace, root: Path, stack: ExitStack) -> dict:
    cache = cache_from_args(args)
    if args.store_url:
        urls, store = (lambda: args.store_url), "given (--store-url)"
    else:
        say("starting a throwaway PostgreSQL cluster")
        cluster, reason = start_cluster()
        if cluster is None:
            raise RuntimeError(f"no PostgreSQL cluster: {reason} (or pass --store-url)")
        stack.callback(cluster.stop)
        urls, store = cluster.new_database, f"throwaway cluster (port {cluster.port})"
    guard_path = root / "promotion-lenient.json"
    guard = json.loads((REPO_ROOT / "configs" / "promotion.json").read_text())
    guard.update(LENIENT_GUARD)
    guard_path.write_text(json.dumps(guard))
    out: dict = {"store": store, "capacity": [], "propagation": [], "promotion": [],
                 "ready_s": {}}
    replicas: list[Replica] = []

    def stop_all() -> None:
        while replicas:
            replicas.pop().stop()

    stack.callback(stop_all)
    url = urls()
    dirs = replica_dirs(root, "shared", cache, max(max(args.replicas), 2))
    for count in sorted(set(args.replicas)):
        while len(replicas) < count:
            replicas.append(start(len(replicas), dirs[len(replicas)], url, guard_path))
            out["ready_s"][f"shared-r{len(replicas) - 1}"] = round(replicas[-1].ready_s, 1)
            fill_cache(root / "shared-models", cache)  # converted by replica 0 if not seeded
        for clients in args.clients:
            say(f"capacity: {clients} client(s) over {count} replica(s), {args.rounds} "
                f"round(s) of {len(QUESTIONS)} questions")
            row = capacity(replicas[:count], clients, args.rounds)
            say(f"  {row['replies']} replies, {row['errors']} errors, "
                f"{row['replies_per_s']} replies/s, p50 {row['p50_s']} s")
            out["capacity"].append(row)
    while len(replicas) < 2:
        replicas.append(start(len(replicas), dirs[len(replicas)], url, guard_path))
    for fact in FACTS[:args.repeats]:
        say(f"propagation: correcting {fact[0]} -> {fact[2]} on replica 0, asking replica 1 "
            f"'{fact[3]}'")
        row = propagation(replicas[0], replicas[1], fact)
        say(f"  answered from memory {row['answered_s']} s after /correct returned "
            f"({row['tries']} tries; index refreshed at {row['index_refreshed_s']} s)")
        out["propagation"].append(row)
    for layout in args.models:
        if layout == "separate":
            stop_all()
            url = urls()
            pair = replica_dirs(root, "separate", cache, 2)
            for i in range(2):
                replicas.append(start(i, pair[i], url, guard_path))
                out["ready_s"][f"separate-r{i}"] = round(replicas[-1].ready_s, 1)
            say(f"separate models: correcting {SEPARATE_FACT[0]} -> {SEPARATE_FACT[2]} "
                "on replica 0")
            replicas[0].client.predict(*SEPARATE_FACT[:3], api_name="/correct")
        row = promotion(replicas[0], replicas[1],
                        FACTS[0] if layout == "shared" else SEPARATE_FACT, args.method,
                        args.promotion_clients)
        row["models"] = layout
        say(f"  replica 1 had the same weights {row['caught_up_s']} s after the promotion "
            f"returned (its own log: {row['reader_own_catch_up']})")
        out["promotion"].append(row)
    stop_all()
    return out


def tables(out: dict) -> str:
    cap = markdown_table(
        ["replicas", "clients", "replies", "errors", "wall s", "replies/s", "p50 s", "p90 s",
         "p99 s", "load 1m"],
        [[r["replicas"], r["clients"], r["replies"], r["errors"], r["wall_s"],
          r["replies_per_s"], r["p50_s"], r["p90_s"], r["p99_s"], r["load"][0]]
         for r in out["capacity"]])
    prop = markdown_table(
        ["fact", "/correct s", "index refreshed s", "answered from memory s", "tries",
         "load 1m"],
        [[f"{r['subject']} -> {r['answer']}", r["correct_call_s"], r["index_refreshed_s"],
          r["answered_s"], r["tries"], r["load"][0]] for r in out["propagation"]])
    answered = [r["answered_s"] for r in out["propagation"] if r["answered_s"] is not None]
    prop += (f"\nmedian answered from memory: {statistics.median(answered):.3f} s "
             f"({len(answered)} of {len(out['propagation'])})" if answered else "")
    promo = markdown_table(
        ["models", "promotion s", "committed", "same weights after s",
         "replica 1's catch-up s (log)",
         "replies", "errors", "load before / promoted / caught up"],
        [[r["models"], r["promotion_s"], r["committed"], r["caught_up_s"],
          ", ".join(f"{c['seconds']:.2f} (done at {c['done_at_s']:+.2f})"
                    for c in r["reader_own_catch_up"]) or "none",
          r["replies"], len(r["errors"]),
          " / ".join(f"{r['load'][k][0]:.2f}" for k in ("before", "promoted", "caught_up"))]
         for r in out["promotion"]])
    phases = markdown_table(
        ["models", "phase", "replies started", "p50 s", "p90 s", "max s"],
        [[r["models"], name, p["replies"], p["p50_s"], p["p90_s"], p["max_s"]]
         for r in out["promotion"] for name, p in r["phases"].items()])
    return (f"\n## Chat capacity (clients round-robin over replicas)\n\n{cap}\n"
            f"\n## Correction propagation (replica 0 -> replica 1)\n\n{prop}\n"
            f"\n## Promotion propagation while serving\n\n{promo}\n"
            f"\n## Replica 1's chat latency around the promotion\n\n{phases}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store-url", default=None,
                        help="PostgreSQL database the replicas share (default: a throwaway "
                             "cluster, a fresh database for each pair of replicas)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2],
                        help="replica counts for the chat capacity stage")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="concurrent chat sessions for the chat capacity stage")
    parser.add_argument("--rounds", type=int, default=2,
                        help=f"rounds of the {len(QUESTIONS)} questions per session")
    parser.add_argument("--repeats", type=int, default=3,
                        help=f"facts corrected for the propagation stage (at most {len(FACTS)})")
    parser.add_argument("--method", default="rome", choices=NAMES,
                        help="the promotion's method")
    parser.add_argument("--promotion-clients", type=int, default=2,
                        help="sessions chatting on replica 1 during the promotion")
    parser.add_argument("--models", nargs="+", choices=["shared", "separate"],
                        default=["shared", "separate"],
                        help="promotion stage with the data dirs sharing models/, and/or with "
                             "a fresh pair that each have their own")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --replicas 2 --clients 1 2 --rounds 1 --repeats 1 "
                             "--models shared")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.clients, args.rounds = [2], [1, 2], 1
        args.repeats, args.models = 1, ["shared"]
    for name in ("replicas", "clients"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name} takes counts of 1 or more")
    if not 1 <= args.repeats <= len(FACTS):
        parser.error(f"--repeats takes 1 to {len(FACTS)}")
    if args.rounds < 1 or args.promotion_clients < 0:
        parser.error("--rounds takes 1 or more, --promotion-clients 0 or more")
    if args.store_url and not args.store_url.startswith(("postgresql://", "postgres://")):
        parser.error("--store-url takes a postgresql:// URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    info = machine_info(1)
    say("replicas bench: " + machine_line(info))
    with data_dir(args.data_dir, "replicas") as root, \
            time_limit(args.timeout or 1800, "replicas"), ExitStack() as stack:
        out = run(args, root, stack)
    print(tables(out))
    info["load_avg_end"] = loadavg()
    print(machine_line(info))
    models_note = {"shared": "the data dirs share one models/ folder (symlink): replica 1 "
                             "reuses the GGUF file replica 0 writes",
                   "separate": "a fresh pair of data dirs, each with its own models/ "
                               "(hard links of the cached model): each writes its own GGUF"}
    write_json(args.json, {
        "benchmark": "replicas", "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "store_url")},
        "questions": QUESTIONS, "tokens": TOKENS, "lenient_guard": LENIENT_GUARD,
        "capacity_models": models_note["shared"],
        "models": {k: models_note[k] for k in args.models}, **out})
    failed = (any(r["errors"] for r in out["capacity"])
              or any(r["answered_s"] is None for r in out["propagation"])
              or any(not r["same_weights"] or r["errors"] for r in out["promotion"]))
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main, (RuntimeError,))
