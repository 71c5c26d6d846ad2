"""Split the hand-written parts into the dev part (tuned on) and the test part (reported only).

    python bench/data/natural/split.py

Within each part file, in the order written, conversations alternate: the 1st, 3rd, 5th ...
go to dev.json, the 2nd, 4th, 6th ... to test.json. The split was made once, before any
tuning; rerunning it reproduces the same two files.
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("places", "people", "orgs", "private")


def main() -> None:
    dev, test = [], []
    for name in PARTS:
        path = HERE / "parts" / f"{name}.json"
        if not path.exists():
            print(f"missing: {path.name}")
            continue
        conversations = json.loads(path.read_text(encoding="utf-8"))
        dev += conversations[0::2]
        test += conversations[1::2]
    for name, part in (("dev", dev), ("test", test)):
        (HERE / f"{name}.json").write_text(json.dumps(part, indent=1, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
        turns = [t for c in part for t in c["turns"]]
        print(f"{name}.json: {len(part)} conversations, {len(turns)} turns, "
              f"{sum('expect' in t for t in turns)} in scope, "
              f"{sum('expect_not' in t for t in turns)} out of scope")


if __name__ == "__main__":
    main()
