"""The hand-written natural-phrasing conversations, a small sample played on the real model.

The whole set is scored by `python -m bench.conversations` (figures in BENCHMARKS.md); this
plays the first conversation of each writer's part of the dev split through the Chat tab's
code path, so a change that breaks how corrections hold in real conversations turns CI red.
"""
from __future__ import annotations

import pytest

from bench.conversations import DEFAULT_DATA, assistant_factory, load_conversations, run

SAMPLE = ("pl-01", "pe-01", "or-01", "pr-01")  # one per part: places, people, orgs, private
# Floors for the sample: just under what the shipped code scores on it (session 24: in scope
# 0.91, kept out 0.75, corrections taken 1.0, non-corrections left 1.0, chat locality 0.80),
# so that a change that breaks the parser, the scope or the follow-up rules turns CI red. The
# issue-30 targets (0.95 and up) are not met yet; BENCHMARKS.md has the whole set's figures.
# Raise these as the figures rise.
FLOORS = {"corrections_taken": 0.75, "non_corrections_left": 1.0, "in_scope": 0.80,
          "kept_out": 0.70, "chat_locality": 0.70}


@pytest.fixture(scope="module")
def sample():
    conversations = [c for c in load_conversations(DEFAULT_DATA) if c.id in SAMPLE]
    assert {c.id for c in conversations} == set(SAMPLE)
    return conversations


@pytest.mark.realmodel
def test_conversation_file_loads_and_counts(sample):
    turns = [t for c in sample for t in c.turns]
    assert any(t.expect for t in turns) and any(t.expect_not for t in turns)
    assert all(t.kind for t in turns)


@pytest.mark.realmodel
def test_natural_conversations_hold_on_the_real_model(sample, model_cache, embedder):
    from assistant.llm import ChatLLM

    llm = ChatLLM.load(None, model_cache)  # its own copy: the adapter wraps its layers
    result = run(sample, max_new_tokens=32, progress=False,
                 factory=assistant_factory(llm=llm, embedder=embedder))
    failed = [f"{r['conversation']}#{r['turn']} [{r['kind']}] {r['user']!r} -> "
              f"({r['route']}) {r['reply'][:80]!r}"
              for r in result["turns"] if not all(v for k, v in r["checks"].items()
                                                  if k != "local")]
    for score, floor in FLOORS.items():
        assert result[score] >= floor, f"{score} {result[score]:.3f} < {floor}:\n" + \
            "\n".join(failed)
