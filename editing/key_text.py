"""Short fact sentences shipped in the repo, for the key statistics C of ROME and MEMIT.

C should describe the keys an edit must leave alone. Self-sampled passages (editing/covariance)
describe the model's running text, but a fact edit mostly disturbs other *facts*: short prompts
that end on a subject, like "Bob Dylan works as" or an open-domain question. These sentences
add such keys to C. They come from the training splits only (`assistant.records.split_by_subject`:
validation subjects and evaluation subjects are dropped) and never from the promotion guard's
locality probes, which must stay an independent check.

    python -m editing.key_text   # rewrites editing/data/key_sentences.txt (deterministic)
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from assistant.records import EditRecord, split_by_subject
from config import REPO_ROOT
from editing.probes import load_probes
from errors import run_command

KEY_SENTENCES = REPO_ROOT / "editing" / "data" / "key_sentences.txt"


def record_sentences(record: EditRecord) -> list[str]:
    """A record's prompt, rephrase and locality prompt, each followed by its recorded answer
    (the data's own wording, noisy prefixes included: keys in the style edits meet)."""
    sentences = []
    if record.ground_truth:
        sentences.append(f"{record.prompt} {record.ground_truth}")
        sentences += [f"{r} {record.ground_truth}" for r in record.rephrases]
    sentences += [f"{p.prompt} {p.answer}" for p in record.locality]
    return [" ".join(s.split()) for s in sentences]


def usable_records() -> list[EditRecord]:
    """Training records none of whose prompts is one of the guard's probes."""

    probes = {prompt.strip().casefold() for prompt, _ in load_probes()}
    train, _ = split_by_subject()
    return [record for records in train.values() for record in records
            if not any(p.strip().casefold() in probes for p in
                       (record.prompt, *record.rephrases, *(p.prompt for p in record.locality)))]


def build(count: int, seed: int) -> list[str]:
    """`count` sentences, shuffled, none sharing a prompt with the guard's probes."""
    sentences = [s for record in usable_records() for s in record_sentences(record)]
    unique = sorted(set(sentences))
    random.Random(seed).shuffle(unique)
    return unique[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m editing.key_text", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=KEY_SENTENCES)
    args = parser.parse_args(argv)
    lines = build(args.count, args.seed)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} sentences to {args.out}")
    return 0


if __name__ == "__main__":
    run_command(main)
