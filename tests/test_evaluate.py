"""The evaluation harness: both record formats, EasyEdit's metrics, and a real run of the
memory route (tiny model, real embedder, real store and index)."""
import json

import pytest

from assistant.memory import EditMemory
from assistant.router import Assistant
from config import router_config
from editing.evaluate import evaluate, main as evaluate_main
from assistant.metrics import (contains_answer, predicted_target_tokens, target_log_prob,
                             token_accuracy, unchanged_share)
from assistant.records import load_records, parse_record
from editing.systems import MemorySystem
from errors import AmendError
from store.db import Store

COUNTERFACT = {
    "case_id": 0, "prompt": "The mother tongue of Danielle Darrieux is", "target_new": "English",
    "subject": "Danielle Darrieux", "ground_truth": "French",
    "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of",
    "locality_prompt": "Michel Rocard is a native speaker of", "locality_ground_truth": "French",
}
ZSRE = {
    "subject": "UniFirst", "src": "What is the product made by UniFirst?", "pred": "uniform",
    "rephrase": "What will be the product of UniFirst?", "alt": "unmanned aircraft",
    "answers": ["uniform"], "loc": "nq question: john goodman's character in the big lebowski",
    "loc_ans": "Walter Sobchak", "cond": "ignored",
}


def test_both_formats_parse():
    cf = parse_record(COUNTERFACT)
    assert (cf.source, cf.prompt, cf.target_new, cf.ground_truth) == (
        "counterfact", COUNTERFACT["prompt"], "English", "French")
    assert cf.rephrases == (COUNTERFACT["rephrase_prompt"],)
    assert cf.locality[0].answer == "French"
    zs = parse_record(dict(ZSRE, portability={"prompt": "Who founded UniFirst?",
                                              "ground_truth": [["Aldo Croatti"]]}))
    assert (zs.source, zs.target_new, zs.ground_truth) == ("zsre", "unmanned aircraft", "uniform")
    assert zs.locality[0].prompt == "john goodman's character in the big lebowski"
    assert zs.portability[0].answer == "Aldo Croatti"
    with pytest.raises(AmendError, match="neither CounterFact nor zsRE"):
        parse_record({"question": "?"})


def test_load_records_limit_and_errors(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([COUNTERFACT, ZSRE, COUNTERFACT]))
    assert [r.source for r in load_records(path, limit=2)] == ["counterfact", "zsre"]
    path.write_text("{broken")
    with pytest.raises(AmendError, match="cannot read records"):
        load_records(path)


def test_token_accuracy_is_teacher_forced(tiny_llm):
    """Predictions are read one position early: logits at t predict token t+1."""
    import torch

    model, tok = tiny_llm.model, tiny_llm.tokenizer
    prompt, target = "The Eiffel Tower is in", "Paris Rome"
    predicted, target_ids = predicted_target_tokens(model, tok, prompt, target)
    prompt_len = len(tok(prompt, add_special_tokens=False).input_ids)
    full = tok(f"{prompt} {target}", add_special_tokens=False).input_ids
    assert target_ids == full[prompt_len:]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0]
    assert predicted == logits[prompt_len - 1:len(full) - 1].argmax(-1).tolist()
    expected = sum(p == t for p, t in zip(predicted, target_ids)) / len(target_ids)
    assert token_accuracy(model, tok, prompt, target) == expected
    assert unchanged_share([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert contains_answer("It is in ROME.", "Rome") and not contains_answer("Paris", "Rome")
    expected_log_prob = torch.log_softmax(logits[prompt_len - 1:len(full) - 1].float(), -1)[
        torch.arange(len(target_ids)), torch.tensor(target_ids)].mean()
    assert target_log_prob(model, tok, prompt, target) == pytest.approx(float(expected_log_prob),
                                                                         abs=1e-5)


@pytest.fixture
def memory_system(tiny_llm, embedder):
    store = Store(":memory:")
    memory = EditMemory(store, embedder, index_path=None)
    return MemorySystem(Assistant(tiny_llm, embedder, store, memory, router_config()),
                        chat_tokens=4)


@pytest.mark.parametrize("sequential", [False, True])
def test_memory_route_evaluation(memory_system, sequential):
    records = [parse_record(COUNTERFACT), parse_record(ZSRE)]
    result = evaluate(memory_system, records, sequential=sequential, progress=False)
    summary = result["summary"]
    assert result["records"] == 2 and len(result["per_record"]) == 2
    # the edit is said in chat (the reply starts with it) and locality probes stay untouched
    assert summary["chat_reliability"] == 1.0
    assert summary["locality"] == 1.0 and summary["chat_locality"] == 1.0
    assert summary["chat_locality_first_sentence"] == 1.0
    assert 0.0 <= summary["reliability"] <= 1.0
    assert summary["routing_ms"] > 0 and summary["seconds_per_edit"] >= 0
    assert 0 <= summary["cpu_seconds_per_edit"]
    assert memory_system.assistant.store.count_edits("active") == 0  # reverted


def test_cli_needs_known_method():
    with pytest.raises(SystemExit):
        evaluate_main(["--method", "no-such-method", "--data", "x.json"])


def test_collisions_flag_probes_about_another_stored_subject():
    from editing.evaluate import collision_free_locality, collisions
    from assistant.records import EditRecord, Probe

    records = [
        EditRecord("Hank Aaron", "Hank Aaron plays", "football", "baseball",
                   locality=(Probe("What sport does Marián Hossa play?", "hockey"),)),
        EditRecord("Marián Hossa", "Marián Hossa plays", "baseball", "hockey",
                   locality=(Probe("What sport does Tom Brady play?", "football"),)),
    ]
    assert collisions(records) == [True, False]
    rows = [{"locality": 0.0, "chat_locality": 0.0}, {"locality": 1.0, "chat_locality": 1.0}]
    assert collision_free_locality(records, rows) == {
        "locality_collisions": 1, "locality_collision_free": 1.0,
        "chat_locality_collision_free": 1.0}
