"""The counterfactual adapter's training examples: right layout, loss only on the target."""
import random

from assistant.counterfactual_train import batch_tensors, encode, make_example
from assistant.records import EditRecord
from tests.conftest import make_tiny_tokenizer

LOUVRE = EditRecord(subject="Louvre", prompt="The Louvre is in", target_new="Madrid",
                    ground_truth="Paris", rephrases=("The Louvre is located in",))
OTHERS = [EditRecord(subject=f"Place {i}", prompt=f"Place {i} is in", target_new=f"City {i}",
                     ground_truth="") for i in range(5)]


def test_example_contains_the_governing_fact_and_a_query_about_it():
    rng = random.Random(0)
    for _ in range(20):
        text, target = make_example(LOUVRE, OTHERS, rng, max_distractors=2)
        assert target == "Madrid"
        assert "New Fact: The Louvre is in Madrid." in text
        assert 1 <= text.count("New Fact:") <= 3
        query = text.split("Prompt: ", 1)[1]
        assert "Louvre" in query


def test_labels_cover_only_the_target():
    tok = make_tiny_tokenizer()
    ids, labels = encode(tok, "New Fact: The Louvre is in Madrid.\nPrompt: The Louvre is in",
                         "Madrid")
    target_ids = tok(" Madrid", add_special_tokens=False).input_ids
    assert ids[-len(target_ids):] == target_ids
    assert labels[-len(target_ids):] == target_ids
    assert set(labels[:-len(target_ids)]) == {-100}
    batch_ids, batch_labels, mask = batch_tensors([(ids, labels), (ids[:5], labels[:5])], 0)
    assert batch_ids.shape == batch_labels.shape == mask.shape == (2, len(ids))
    assert mask[1].sum() == 5 and (batch_labels[1, 5:] == -100).all()
