"""Shared fixtures: a tiny random chat model for fast tests, the real models for marked ones.

The tiny model is a real LlamaForCausalLM with a real BPE tokenizer and the ChatML template,
just small and randomly initialised, so the same code paths run in milliseconds.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from assistant.records import DATA_LAYOUT, find_data_file
from config import chat_config_for
from store.db import Store
from store.pg_cluster import start_cluster

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The Eiffel Tower is in Paris. The Louvre is in Paris. Rome is the capital of Italy.",
    "Where is the Eiffel Tower? Which city is the Louvre in? What is the capital of France?",
    "No, it's Rome. Actually the Louvre is in Madrid. Remember that the CEO of Acme is Jane Roe.",
    "system user assistant You are a helpful assistant. These facts are true. Answer: .",
]


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def make_tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_llm():
    from assistant.llm import ChatLLM

    tok = make_tiny_tokenizer()
    return ChatLLM(make_tiny_model(len(tok)), tok, chat_config_for("smollm2"), name="tiny")


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    """A tiny model saved as a Hugging Face folder, as a user would pass with --model."""
    tok = make_tiny_tokenizer()
    folder = tmp_path / "tiny-model"
    make_tiny_model(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster for this test session (one per xdist worker); the tests
    that use it skip, saying why, where PostgreSQL or psycopg is missing."""
    cluster, reason = start_cluster()
    if cluster is None:
        pytest.skip(f"no PostgreSQL cluster: {reason}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def embedder():
    from assistant.embedder import Embedder
    from config import router_config

    torch.set_num_threads(1)
    return Embedder(int8=router_config().embedding_int8)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A data directory holding the converted default model, made once per test session."""
    from assistant.llm import prepare_default_model

    cache = tmp_path_factory.mktemp("model-cache")
    prepare_default_model(cache)
    return cache


def data_dir_with_model(model_cache: Path, target: Path) -> Path:
    """A fresh data directory that reuses the converted model (no second conversion)."""
    target.mkdir(parents=True, exist_ok=True)
    link = target / "models"
    if not link.exists():
        os.symlink(model_cache / "models", link)
    return target


@pytest.fixture(scope="session")
def real_llm(model_cache):
    from assistant.llm import ChatLLM

    torch.set_num_threads(1)
    return ChatLLM.load(None, model_cache)


def require_data(kind: str, source: str) -> Path:
    """A public data file found by the commands' lookup (assistant.records), or a skip: the
    data sets are optional (`python -m editing.datasets fetch`)."""
    path = find_data_file(kind, source)
    if path is None:
        pytest.skip(f"{DATA_LAYOUT[(kind, source)]} not found (python -m editing.datasets where)")
    return path


@pytest.fixture
def data_files() -> dict[tuple[str, str], Path]:
    """All four public data files, (kind, source) -> path; skips when one is missing."""
    return {key: require_data(*key) for key in DATA_LAYOUT}

