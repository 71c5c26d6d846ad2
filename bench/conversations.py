"""Scripted conversations played through the Chat tab's code path, scored on what users see.

    python -m bench.conversations --data FILE [--json OUT] [--limit N] [--max-new-tokens T]

Input: a JSON list of conversations

    {"id": str, "turns": [{"user": str, "expect": [str, ...]?, "expect_not": [str, ...]?,
                           "expect_route": "correction" | "not_correction"?, "kind": str?}]}

or records in the format `editing.evaluate` reads (CounterFact / zsRE), each turned into a
conversation: the correction in chat words, then its paraphrases (in scope), its locality
prompts (out of scope) and its portability probes (one hop).

Each conversation gets a fresh store and index (one model and embedder for all), and every
message goes through `Assistant.chat_turn`, as in the Chat tab: parsed as a correction or
answered as a question, greedy decoding, the history kept exactly as the tab keeps it.

Scores (top-level keys of the JSON):
- `in_scope`: share of turns with `expect` whose reply contains one expected string
  (case-insensitive; a number does not match inside a longer one: "9th" is not in "19th");
- `kept_out`: share of turns with `expect_not` whose reply contains none of them;
- `corrections_taken`: share of `expect_route: correction` turns that stored an edit;
- `non_corrections_left`: share of `expect_route: not_correction` turns that stored nothing;
- `chat_generalization`: `in_scope` over the in-scope turns that are not one-hop questions;
- `chat_locality`: share of `expect_not` turns answered by the base model with no edit in hand
  (exactly as the unedited assistant would, given the same conversation);
- `one_hop`: `in_scope` over the `one_hop` turns;
- `by_kind`: per turn kind, the count and the share that passed its own check.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (REPO_ROOT, machine_info, markdown_table, run_cli, set_threads,
                          setup_logging, write_json)

DEFAULT_DATA = REPO_ROOT / "bench" / "data" / "natural" / "dev.json"
ROUTES = ("correction", "not_correction")


class ConversationFileError(ValueError):
    """The data file cannot be read as conversations or records; the message says where."""


@dataclass
class Turn:
    user: str
    kind: str = ""
    expect: list[str] = field(default_factory=list)
    expect_not: list[str] = field(default_factory=list)
    expect_route: str | None = None


@dataclass
class Conversation:
    id: str
    turns: list[Turn]


# -- reading ---------------------------------------------------------------------------------
def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConversationFileError(f"{where}: expected a list of non-empty strings")
    return value


def _turn(raw: Any, where: str) -> Turn:
    if not isinstance(raw, dict) or not isinstance(raw.get("user"), str):
        raise ConversationFileError(f"{where}: a turn needs a \"user\" message")
    route = raw.get("expect_route")
    if route is not None and route not in ROUTES:
        raise ConversationFileError(f"{where}: expect_route must be one of {ROUTES}")
    return Turn(raw["user"], str(raw.get("kind") or ""), _strings(raw.get("expect"), where),
                _strings(raw.get("expect_not"), where), route)


def _record_conversation(record, number: int) -> Conversation:
    """A record as a chat: the question and a short correction, or a stated fact; then its
    paraphrases, locality prompts and portability probes."""
    target = record.target_new
    if record.prompt.rstrip().endswith("?"):
        opening = [Turn(record.prompt, "question"),
                   Turn(f"No, it's {target}.", "correction", expect_route="correction")]
    else:
        opening = [Turn(f"Actually, {record.prompt.strip()} {target}.", "correction",
                        expect_route="correction")]
    turns = [*opening, *(Turn(p, "paraphrase", expect=[target]) for p in record.rephrases)]
    for probe in record.locality:
        if target.casefold() not in probe.answer.casefold():
            turns.append(Turn(probe.prompt, "locality", expect_not=[target]))
    turns += [Turn(p.prompt, "one_hop", expect=[p.answer]) for p in record.portability]
    return Conversation(f"{record.source or 'record'}-{number}", turns)


def load_conversations(path: Path, limit: int | None = None) -> list[Conversation]:
    """Conversations from `path` (either format); a bad file raises ConversationFileError."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversationFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise ConversationFileError(f"{path}: expected a non-empty JSON list")
    if not all(isinstance(c, dict) and "turns" in c for c in raw):
        from assistant.records import load_records

        records = load_records(path, limit)
        return [_record_conversation(r, i) for i, r in enumerate(records)]
    conversations = []
    for i, item in enumerate(raw[:limit] if limit else raw):
        where = f"{Path(path).name}: conversation {i + 1}"
        if not isinstance(item["turns"], list) or not item["turns"]:
            raise ConversationFileError(f"{where}: \"turns\" must be a non-empty list")
        turns = [_turn(t, f"{where}, turn {j + 1}") for j, t in enumerate(item["turns"])]
        conversations.append(Conversation(str(item.get("id") or i + 1), turns))
    return conversations


# -- playing -----------------------------------------------------------------------------------
def _contains(reply: str, needles: list[str]) -> bool:
    """Case-insensitive substring, except that a number is not found inside a longer one
    ("9th" is not in "19th", "6" is not in "1969")."""
    def pattern(needle: str) -> str:
        needle = needle.strip()
        return ((r"(?<!\d)" if needle[:1].isdigit() else "") + re.escape(needle)
                + (r"(?!\d)" if needle[-1:].isdigit() else ""))
    return any(re.search(pattern(n), reply, re.I) for n in needles)


def judge(turn: Turn, reply: str, route: str, edit_ids: list[int]) -> dict[str, bool]:
    """Each check that applies to this turn, by name."""
    checks: dict[str, bool] = {}
    if turn.expect:
        checks["in_scope"] = _contains(reply, turn.expect)
    if turn.expect_not:
        checks["kept_out"] = not _contains(reply, turn.expect_not)
        checks["local"] = route == "base" and not edit_ids
    if turn.expect_route == "correction":
        checks["correction_taken"] = route == "correction"
    elif turn.expect_route == "not_correction":
        checks["non_correction_left"] = route != "correction"
    return checks


def play(assistant_factory, conversation: Conversation, max_new_tokens: int) -> list[dict]:
    """Play one conversation on a fresh assistant; one row per turn."""
    assistant = assistant_factory()
    history: list[dict] = []
    rows = []
    for number, turn in enumerate(conversation.turns):
        final = None
        for history, chunk in assistant.chat_turn(history, turn.user, session=conversation.id,
                                                  max_new_tokens=max_new_tokens):
            final = chunk
        trace = final.trace
        reply = history[-1]["content"]
        rows.append({"conversation": conversation.id, "turn": number, "kind": turn.kind,
                     "user": turn.user, "reply": reply, "route": trace.route,
                     "edit_ids": trace.edit_ids,
                     "checks": judge(turn, reply, trace.route, trace.edit_ids)})
    return rows


def _share(rows: list[dict], check: str, kinds: set[str] | None = None,
           exclude: set[str] = frozenset()) -> float | None:
    values = [r["checks"][check] for r in rows if check in r["checks"]
              and (kinds is None or r["kind"] in kinds) and r["kind"] not in exclude]
    return sum(values) / len(values) if values else None


def summarise(rows: list[dict]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, Any]] = defaultdict(lambda: {"turns": 0, "passed": 0})
    for row in rows:
        if row["checks"]:
            entry = by_kind[row["kind"] or "-"]
            entry["turns"] += 1
            entry["passed"] += all(v for k, v in row["checks"].items() if k != "local")
    for entry in by_kind.values():
        entry["share"] = entry["passed"] / entry["turns"]
    return {
        "in_scope": _share(rows, "in_scope"),
        "kept_out": _share(rows, "kept_out"),
        "corrections_taken": _share(rows, "correction_taken"),
        "non_corrections_left": _share(rows, "non_correction_left"),
        "chat_generalization": _share(rows, "in_scope", exclude={"one_hop"}),
        "chat_locality": _share(rows, "local"),
        "one_hop": _share(rows, "in_scope", kinds={"one_hop"}),
        "by_kind": dict(sorted(by_kind.items())),
        "counts": {"conversations": len({r["conversation"] for r in rows}), "turns": len(rows),
                   "in_scope_turns": sum("in_scope" in r["checks"] for r in rows),
                   "out_of_scope_turns": sum("kept_out" in r["checks"] for r in rows)},
    }


def assistant_factory(llm=None, embedder=None, engine: str | None = None):
    """A function making a fresh Assistant (new in-memory store and index) around one loaded
    model, embedder and counterfactual adapter (the default ones unless given); a model loaded
    here decodes with `engine` (None: the chat config's, as the app)."""
    import logging

    from assistant.embedder import Embedder
    from assistant.llm import ChatLLM
    from assistant.memory import EditMemory
    from assistant.router import Assistant
    from assistant.runtime import load_counterfactual_adapter
    from config import default_data_dir, router_config
    from store.db import Store

    from editing.serving import serve

    config = router_config()
    if llm is None:
        llm = ChatLLM.load(None, default_data_dir())
        serve(llm, default_data_dir(), engine)
    embedder = embedder or Embedder(int8=config.embedding_int8)
    adapter = load_counterfactual_adapter(llm.model, llm.family, logging.getLogger("bench").info)

    def fresh() -> Assistant:
        store = Store(":memory:")
        return Assistant(llm, embedder, store, EditMemory(store, embedder, None), config, adapter)
    return fresh


def run(conversations: list[Conversation], max_new_tokens: int, progress: bool = True,
        factory=None) -> dict[str, Any]:
    from tqdm import tqdm

    factory = factory or assistant_factory()
    rows: list[dict] = []
    started = time.perf_counter()
    bar = tqdm(total=sum(len(c.turns) for c in conversations), desc="Playing conversations",
               unit="turn", disable=not progress, mininterval=2.0)
    for conversation in conversations:
        bar.set_postfix_str(conversation.id)
        rows += play(factory, conversation, max_new_tokens)
        bar.update(len(conversation.turns))
    bar.close()
    result = summarise(rows)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["turns"] = rows
    return result


def _report(result: dict[str, Any]) -> str:
    keys = ("in_scope", "kept_out", "corrections_taken", "non_corrections_left",
            "chat_generalization", "chat_locality", "one_hop")
    lines = [markdown_table(["score", "value"],
                            [(k, "—" if result[k] is None else f"{result[k]:.3f}") for k in keys])]
    lines.append("")
    lines.append(markdown_table(["kind", "turns", "passed"],
                                [(k, v["turns"], f"{v['share']:.3f}")
                                 for k, v in result["by_kind"].items()]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="conversations or records JSON (default: the natural set's dev "
                             "part)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="write scores and every turn's reply here")
    parser.add_argument("--limit", type=int, default=None, help="first N conversations only")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="play only every N-th conversation starting at the K-th (0-based), "
                             "to spread a run over processes; --merge adds the parts up")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="PART",
                        help="instead of playing, add up the --json outputs of shards")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="reply length limit per turn (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--engine", choices=["llama.cpp", "torch"], default=None,
                        help="who decodes replies (default: the chat config's, as the app)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print failed turns")
    args = parser.parse_args(argv)
    setup_logging(False)
    if args.merge:
        rows = [row for part in args.merge
                for row in json.loads(part.read_text(encoding="utf-8"))["turns"]]
        result = {**summarise(rows), "turns": rows, "merged": [str(p) for p in args.merge]}
        print(_report(result))
        write_json(args.json, result)
        return 0
    conversations = load_conversations(args.data, args.limit)
    if args.shard:
        k, n = (int(x) for x in args.shard.split("/"))
        conversations = conversations[k::n]
    set_threads(args.threads)
    result = run(conversations, args.max_new_tokens,
                 factory=assistant_factory(engine=args.engine))
    result["data"] = str(args.data)
    result["engine"] = args.engine or "chat config"
    result["machine"] = machine_info(args.threads)
    print(_report(result))
    if args.verbose:
        for row in result["turns"]:
            if not all(v for k, v in row["checks"].items() if k != "local"):
                print(f"FAIL {row['conversation']}#{row['turn']} [{row['kind']}] "
                      f"{row['user']!r} -> ({row['route']}) {row['reply'][:100]!r}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    run_cli(main, errors=(ConversationFileError,))
