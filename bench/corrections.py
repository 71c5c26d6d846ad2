"""Accuracy of the chat-correction parser (assistant/corrections.py) on a labelled message set.

Each line of the data file (default tests/data/corrections.jsonl) is one chat message with the
previous question/answer and what a careful reader takes it to be:

    {"message": "No, it's Rome", "last_question": "Where is the Eiffel Tower?",
     "last_answer": "Paris.", "category": "reply-sentence",
     "expect": {"kind": "correction", "subject": "Eiffel Tower", "target": "Rome"}}

`expect.kind` is "correction", "clarify" (a question back is the right reply) or "none" (not a
correction: answer it normally). Reported per category and overall:

- extraction accuracy: share of "correction" items parsed to a Correction whose subject and
  target_new both match (case-insensitive, whitespace collapsed, trailing punctuation stripped);
- clarification accuracy: share of "clarify" items answered with a Clarification;
- rejection rate: share of "none" items for which the parser returns None;
- false-correction rate: share of "none" items taken for a Correction (a wrong edit stored).

    python -m bench.corrections [--data FILE] [--json OUT] [-v]

Pure stdlib + the parser; runs in well under a second.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/corrections.py` as well as `-m`
    sys.path.insert(0, str(REPO_ROOT))

from assistant.corrections import Clarification, Correction, parse_correction  # noqa: E402

DEFAULT_DATA = REPO_ROOT / "tests" / "data" / "corrections.jsonl"
KINDS = ("correction", "clarify", "none")
_TRAILING = ".!?,;:\u2026 "


def norm(text: str | None) -> str:
    """Comparison form: casefolded, whitespace collapsed, trailing punctuation stripped."""
    return " ".join((text or "").split()).casefold().rstrip(_TRAILING)


def load(path: str | Path) -> list[dict[str, Any]]:
    """Read the JSONL data set; blank lines are skipped, a malformed item raises ValueError."""
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        kind = item.get("expect", {}).get("kind")
        if kind not in KINDS or "message" not in item:
            raise ValueError(f"{path}:{number}: bad item {line[:80]!r}")
        items.append(item)
    return items


@dataclass
class Outcome:
    """One item's verdict: `ok` is whether the parser did what the label asks."""

    category: str
    kind: str
    ok: bool
    got: str  # a short description of the parser's result, for failure listings
    message: str


def describe(result: object) -> str:
    if isinstance(result, Correction):
        return f"correction(subject={result.subject!r}, target={result.target_new!r})"
    if isinstance(result, Clarification):
        return "clarify"
    return "none"


def judge(item: dict[str, Any]) -> Outcome:
    """Run the parser on one item and compare with its label."""
    expect = item["expect"]
    result = parse_correction(item["message"], item.get("last_question"), item.get("last_answer"))
    if expect["kind"] == "correction":
        ok = (isinstance(result, Correction) and norm(result.subject) == norm(expect["subject"])
              and norm(result.target_new) == norm(expect["target"]))
    elif expect["kind"] == "clarify":
        ok = isinstance(result, Clarification)
    else:
        ok = result is None
    return Outcome(item.get("category", "-"), expect["kind"], ok, describe(result), item["message"])


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def score(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline rates plus per-category counts and the failures (used by the tests too)."""
    outcomes = [judge(item) for item in items]
    by_kind = {k: [o for o in outcomes if o.kind == k] for k in KINDS}
    false_corrections = sum(o.got.startswith("correction") for o in by_kind["none"])
    categories: dict[str, dict[str, Any]] = defaultdict(lambda: {"n": 0, "ok": 0})
    for o in outcomes:
        row = categories[o.category]
        row["n"] += 1
        row["ok"] += o.ok
        row["kind"] = o.kind
    return {
        "counts": {k: len(v) for k, v in by_kind.items()},
        "extraction_accuracy": _rate(sum(o.ok for o in by_kind["correction"]),
                                     len(by_kind["correction"])),
        "clarification_accuracy": _rate(sum(o.ok for o in by_kind["clarify"]),
                                        len(by_kind["clarify"])),
        "rejection_rate": _rate(sum(o.ok for o in by_kind["none"]), len(by_kind["none"])),
        "false_correction_rate": _rate(false_corrections, len(by_kind["none"])),
        "categories": dict(sorted(categories.items(), key=lambda kv: (KINDS.index(kv[1]["kind"]),
                                                                     kv[0]))),
        "failures": [asdict(o) for o in outcomes if not o.ok],
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(report: dict[str, Any], verbose: bool = False) -> str:
    lines = ["| category | expected | n | correct | rate |", "|---|---|---:|---:|---:|"]
    for name, row in report["categories"].items():
        lines.append(f"| {name} | {row['kind']} | {row['n']} | {row['ok']} | "
                     f"{_pct(row['ok'] / row['n'])} |")
    c = report["counts"]
    lines += ["", "| metric | value | items |", "|---|---:|---:|",
              f"| extraction accuracy (subject + target) | "
              f"{_pct(report['extraction_accuracy'])} | {c['correction']} |",
              f"| clarification accuracy | {_pct(report['clarification_accuracy'])} | "
              f"{c['clarify']} |",
              f"| non-correction rejection rate | {_pct(report['rejection_rate'])} | {c['none']} |",
              f"| false-correction rate | {_pct(report['false_correction_rate'])} | {c['none']} |"]
    if verbose and report["failures"]:
        lines += ["", f"Failures ({len(report['failures'])}):"]
        for f in report["failures"]:
            lines.append(f"  [{f['category']}] {f['message']!r}: expected {f['kind']}, "
                         f"got {f['got']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSONL data set")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the failures")
    args = parser.parse_args(argv)
    report = score(load(args.data))
    print(render(report, args.verbose))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
