"""Hyperparameter files load into typed dataclasses and reject bad fields by name."""
import json

import pytest

from config import CONFIG_DIR, ChatConfig, RouterConfig, chat_config_for, load_config, router_config
from errors import ConfigError


def test_shipped_configs_load():
    assert chat_config_for("smollm2").stop_tokens[0] == "<|im_end|>"
    assert chat_config_for("some-unknown-family") == load_config(
        ChatConfig, CONFIG_DIR / "chat" / "default.json")
    router = router_config()
    assert 0.0 <= router.scope_threshold <= 1.0
    assert "{facts}" in router.counterfactual_system_prompt


def _write(tmp_path, data):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    return path


def test_unknown_and_missing_fields_named(tmp_path):
    good = json.loads((CONFIG_DIR / "router" / "all-minilm-l6-v2.json").read_text())
    bad = dict(good, top_kk=3)
    del bad["top_k"]
    with pytest.raises(ConfigError, match=r"unknown fields \['top_kk'\], missing fields \['top_k'\]"):
        load_config(RouterConfig, _write(tmp_path, bad))


def test_wrong_type_named(tmp_path):
    good = json.loads((CONFIG_DIR / "router" / "all-minilm-l6-v2.json").read_text())
    with pytest.raises(ConfigError, match="'top_k' should be int"):
        load_config(RouterConfig, _write(tmp_path, dict(good, top_k="8")))


def test_not_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(RouterConfig, path)
