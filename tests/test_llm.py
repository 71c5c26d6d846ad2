"""ChatLLM on a tiny random model: streaming, stop tokens, limits, context truncation,
and loading a user's Hugging Face folder with --model."""
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from assistant.llm import ChatLLM, Generation, fix_tokenizer
from config import chat_config_for
from errors import ModelNotFoundError
from tests.conftest import make_tiny_tokenizer


def test_stream_grows_and_respects_limit(tiny_llm):
    stats = Generation()
    chunks = list(tiny_llm.stream_chat([{"role": "user", "content": "Where is the Louvre?"}],
                                       max_new_tokens=7, stats=stats))
    assert 0 < stats.new_tokens <= 7
    assert len(chunks) == stats.new_tokens
    assert all(b.startswith(a) or len(b) >= len(a) for a, b in zip(chunks, chunks[1:]))
    assert stats.prompt_tokens > 5


def test_greedy_is_deterministic(tiny_llm):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert tiny_llm.chat(messages, max_new_tokens=10) == tiny_llm.chat(messages, max_new_tokens=10)


def test_stops_at_end_of_turn(tiny_llm):
    ids, _ = tiny_llm.encode_chat([{"role": "user", "content": "Where is the Louvre?"}])
    first = next(tiny_llm.stream_ids(ids, 5))
    tiny_llm.stop_ids.add(first)  # make the model's first greedy token an end-of-turn
    stats = Generation()
    assert list(tiny_llm.stream_ids(ids, 5, stats)) == []
    assert stats.new_tokens == 0


def test_prefill_starts_the_reply(tiny_llm):
    text = tiny_llm.chat([{"role": "user", "content": "Where is the Louvre?"}],
                         prefill="The Louvre is in Madrid.", max_new_tokens=3)
    assert text.startswith("The Louvre is in Madrid.")


def test_long_history_drops_oldest_turns(tiny_llm):
    tiny_llm.config = replace(tiny_llm.config, context_tokens=160, max_new_tokens=16)
    history = []
    for i in range(20):
        history += [{"role": "user", "content": f"Where is the Louvre? {i}"},
                    {"role": "assistant", "content": "The Louvre is in Paris."}]
    ids, truncated = tiny_llm.encode_chat(history + [{"role": "user", "content": "Rome?"}])
    assert truncated
    assert len(ids) <= 160 - 16
    assert "Rome?" in tiny_llm.tokenizer.decode(ids)


def test_huge_message_cut_to_context(tiny_llm):
    tiny_llm.config = replace(tiny_llm.config, context_tokens=256, max_new_tokens=16)
    huge = "Where is the Eiffel Tower? " * 800  # ~20,000 characters
    stats = Generation()
    reply = tiny_llm.chat([{"role": "user", "content": huge}], max_new_tokens=4, stats=stats)
    assert stats.truncated
    assert stats.prompt_tokens <= 256 - 4  # room left for the 4 new tokens
    assert isinstance(reply, str)


def test_fix_tokenizer_removes_prepended_bos():
    tok = make_tiny_tokenizer()
    from tokenizers import processors

    bos = tok.convert_tokens_to_ids("<|im_start|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)])
    assert tok("Rome").input_ids[0] == bos  # the pitfall: every input gets <|im_start|>
    fix_tokenizer(tok, ("<|im_end|>",))
    assert bos not in tok("Rome").input_ids
    assert tok.eos_token == "<|im_end|>"


def test_load_user_model_folder(tiny_model_dir, tmp_path):
    llm = ChatLLM.load(tiny_model_dir, tmp_path)
    assert llm.name == "tiny-model"
    assert llm.config.system_prompt == "You are a helpful assistant."  # the generic config
    assert isinstance(llm.chat([{"role": "user", "content": "Rome?"}], max_new_tokens=3), str)


def test_missing_model_path_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        ChatLLM.load(missing, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        ChatLLM.load(tmp_path / "empty", tmp_path)


@pytest.mark.parametrize("tokens,looping", [
    ([5, 6, 5, 6, 5, 6, 5, 6], True),  # "Rome. Rome. Rome. Rome."
    ([1, 2, 3, 9, 9, 9, 9, 9, 9, 9, 9], True),
    ([1, 0, 0, 0], False),  # digits of a number
    ([4, 5, 6, 4, 5, 6, 4, 5, 6], True),
    ([4, 5, 6, 4, 5, 6, 7], False),
    ([], False),
])
def test_loop_detection(tokens, looping):
    from assistant.llm import is_looping

    assert is_looping(tokens) is looping


# --- the repeat blocker: no "Paris, France, France." ---------------------------------------------

def _blocker(tok, n=6):
    from assistant.llm import RepeatBlocker

    return RepeatBlocker(tok, n)


def test_blocker_forbids_completing_a_repeated_ngram():
    tok = make_tiny_tokenizer()
    blocker = _blocker(tok)
    ids = tok("The Louvre is in Paris, Rome,", add_special_tokens=False).input_ids
    rome = tok(" Rome", add_special_tokens=False).input_ids
    assert len(rome) == 1  # one token in the tiny vocabulary, as " France" is in SmolLM2's
    assert blocker.banned(ids) == rome  # ", Rome, Rome" would repeat ", Rome"
    scores = torch.zeros(1, len(tok))
    scores[0, rome[0]] = 5.0  # the model's favourite
    out = blocker(torch.tensor([ids]), scores)
    assert out[0, rome[0]] == float("-inf") and scores[0, rome[0]] == 5.0  # input left alone
    assert int(out[0].argmax()) != rome[0]
    # longer n-grams: "is in Paris is in" may not go on with " Paris", nor
    # "is in Paris. is in Paris" with "."
    ids = tok("The Louvre is in Paris is in", add_special_tokens=False).input_ids
    paris = tok(" Paris", add_special_tokens=False).input_ids
    assert blocker.banned(ids) == paris
    ids = tok("The Louvre is in Paris. is in Paris", add_special_tokens=False).input_ids
    assert blocker.banned(ids) == tok(".", add_special_tokens=False).input_ids
    assert _blocker(tok, 3).banned(ids) == []  # a 4-gram: beyond max_ngram


@pytest.mark.parametrize("text", [
    "1,1,1",  # numbers: no word of two letters
    "It is 1,000,000",
    "It is 000",
    "Rome Rome",  # one token said again (k=1) ...
    "Rome Rome Rome",  # ... even as "Rome Rome" + "Rome Rome"
    "The Louvre is in Paris, Rome",  # no repeat yet
])
def test_blocker_leaves_numbers_single_words_and_fresh_text(text):
    tok = make_tiny_tokenizer()
    ids = tok(text, add_special_tokens=False).input_ids
    assert _blocker(tok).banned(ids) == []


def test_blocker_allows_one_word_said_twice():
    tok = make_tiny_tokenizer()
    word = tok(" Canberra", add_special_tokens=False).input_ids  # " ", "C", "an", "ber", ...
    assert 2 < len(word) <= 6
    ids = tok("Where is", add_special_tokens=False).input_ids + word + word[:-1]
    assert _blocker(tok).banned(ids) == []  # "Canberra Canberra", like "Bora Bora"
    comma = tok(",", add_special_tokens=False).input_ids
    ids = tok("Where is", add_special_tokens=False).input_ids + word + comma + word
    assert _blocker(tok, 7).banned(ids) == comma  # " Canberra, Canberra,": no longer one word


def test_blocker_ignores_repeats_without_letters():
    tok = make_tiny_tokenizer()
    comma, dot = (tok(p, add_special_tokens=False).input_ids[0] for p in ",.")
    assert _blocker(tok).banned([comma, dot, comma]) == []


def _repeat_free(llm, messages, limit):
    """The reply without the blocker, and whether it has any repeat the blocker forbids."""
    ids, _ = llm.encode_chat(messages, "", limit)
    reply = list(llm.stream_ids(ids, limit))
    blocker = _blocker(llm.tokenizer)
    context = ids + reply
    clean = all(context[len(ids) + i] not in blocker.banned(context[:len(ids) + i])
                for i in range(len(reply)))
    return reply, clean


def _lively_llm():
    """The tiny model with untied, larger random weights: it writes varied tokens (the shared
    tiny model only repeats its last token, which tests nothing here)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=False,
                         initializer_range=0.5)
    return ChatLLM(LlamaForCausalLM(config).eval(), tok, chat_config_for("smollm2"), name="tiny")


def test_replies_without_repeats_are_token_for_token_unchanged():
    llm = _lively_llm()
    on = llm.config
    assert on.max_repeat_ngram >= 2  # the shipped configs turn it on
    off = replace(on, max_repeat_ngram=0)
    prompts = ["Where is the Eiffel Tower?", "What is the capital of France?", "Rome?",
               "Which city is the Louvre in?", "Where is the Louvre?", "Tell me about Paris.",
               "Who is the CEO of Acme?", "Is Rome in Italy?"]
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        llm.config = off
        assert llm.repeat_blocker() is None
        plain, clean = _repeat_free(llm, messages, 40)
        assert clean and len(set(plain)) > 10  # varied text with nothing to block
        llm.config = on
        ids, _ = llm.encode_chat(messages, "", 40)
        assert list(llm.stream_ids(ids, 40)) == plain


class _Scripted(torch.nn.Module):
    """A stand-in model that wants to write a fixed token sequence (its second choice is
    always `fallback`), to drive `_greedy` into a stutter."""

    def __init__(self, script, fallback, vocab):
        super().__init__()
        self.script, self.fallback, self.vocab = script, fallback, vocab

    def forward(self, input_ids, past_key_values=None, use_cache=True):
        step = past_key_values or 0
        logits = torch.zeros(1, input_ids.shape[1], self.vocab)
        logits[0, -1, self.fallback] = 1.0
        if step < len(self.script):
            logits[0, -1, self.script[step]] = 2.0
        return SimpleNamespace(logits=logits, past_key_values=step + 1)


def test_greedy_generation_skips_the_stutter():
    tok = make_tiny_tokenizer()
    script = tok("The Louvre is in Paris, Rome, Rome, Rome", add_special_tokens=False).input_ids
    dot = tok(".", add_special_tokens=False).input_ids[0]
    llm = ChatLLM(_Scripted(script, dot, len(tok)), tok, chat_config_for("smollm2"))
    ids, _ = llm.encode_chat([{"role": "user", "content": "Where is the Louvre?"}])
    # the scripted " Rome" after "Paris, Rome," is forbidden (its second choice "." comes
    # instead), and the script's "," + " Rome" after that repeats nothing
    assert tok.decode(list(llm.stream_ids(ids, len(script)))) == \
        "The Louvre is in Paris, Rome,., Rome"
    llm.config = replace(llm.config, max_repeat_ngram=0)
    assert tok.decode(list(llm.stream_ids(ids, len(script)))) == \
        "The Louvre is in Paris, Rome, Rome, Rome"


def test_chat_config_rejects_a_one_token_ngram(tmp_path):
    import json

    from config import CONFIG_DIR, ChatConfig, load_config
    from errors import ConfigError

    good = json.loads((CONFIG_DIR / "chat" / "smollm2.json").read_text())
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(dict(good, max_repeat_ngram=1)))
    with pytest.raises(ConfigError, match="max_repeat_ngram"):
        load_config(ChatConfig, path)


@pytest.mark.realmodel
def test_real_model_does_not_stutter(real_llm):
    reply = real_llm.chat([{"role": "user", "content": "Where is the Eiffel Tower?"}],
                          max_new_tokens=40)
    assert "Paris" in reply and "France, France" not in reply
