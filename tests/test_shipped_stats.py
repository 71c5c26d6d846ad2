"""The shipped key statistics: written as an upper triangle, read back exactly, refused when
their checksum does not match, and used by `second_moments` instead of sampling text."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from editing import stats_bundle as shipped_stats
from editing.covariance import second_moments


@pytest.fixture
def bundle_root(tmp_path, monkeypatch):
    root = tmp_path / "bundle"
    monkeypatch.setattr(shipped_stats, "BUNDLE_ROOT", root)
    return root


def _symmetric(size: int) -> torch.Tensor:
    half = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    return half @ half.T


def test_round_trip_is_exact_and_checksummed(bundle_root):
    mom2 = _symmetric(12)
    folder = shipped_stats.write_bundle({"layer.mom2.safetensors": mom2}, "fp", 100, "cmd")
    assert torch.equal(shipped_stats.shipped_moment("fp", "layer.mom2.safetensors"), mom2)
    assert shipped_stats.shipped_moment("other-model", "layer.mom2.safetensors") is None
    assert shipped_stats.shipped_moment("fp", "missing.safetensors") is None
    path = folder / "layer.mom2.safetensors"
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")  # damaged on disk
    assert shipped_stats.shipped_moment("fp", "layer.mom2.safetensors") is None


def test_second_moments_reads_the_bundle_and_caches_it(bundle_root, tmp_path):
    mom2 = _symmetric(8)
    name = "model.layers.4.mlp.down_proj"
    file_name = f"{name}.mom2-40-0.safetensors"
    shipped_stats.write_bundle({file_name: mom2}, "fp", 40, "cmd")
    progress = []
    # no model: were the bundle not used, sampling text would fail at once
    got = second_moments(None, None, [name], 40, 0, tmp_path / "data", "fp", progress.append)
    assert torch.equal(got[name], mom2)
    assert any("shipped" in line for line in progress)
    cached = load_file(str(tmp_path / "data" / "stats" / "fp" / file_name))["mom2"]
    assert torch.equal(cached, mom2)  # later promotions read the cache
    with pytest.raises(AttributeError):  # and shipped=False really computes
        second_moments(None, None, [name], 40, 0, tmp_path / "data2", "fp", shipped=False)


@pytest.mark.parametrize("method", ["rome", "memit"])
def test_the_bundle_covers_every_layer_the_shipped_config_edits(method):
    """Changing a SmolLM2 ROME/MEMIT config's layers or corpus without refreshing the bundle
    would silently bring back the 13-minute first promotion."""
    import hashlib
    import json

    from config import CONFIG_DIR, load_config
    from editing.covariance import cache_file_name
    from editing.hparams import edited_modules
    from editing.registry import METHODS

    cfg = load_config(METHODS[method].config_type, CONFIG_DIR / method / "smollm2.json")
    folders = [p for p in shipped_stats.BUNDLE_ROOT.iterdir() if p.is_dir()]
    assert len(folders) == 1  # the default model's fingerprint
    files = json.loads((folders[0] / shipped_stats.MANIFEST).read_text())["files"]
    for module in edited_modules(cfg):
        name = cache_file_name(module, cfg)
        assert name in files, f"{name} is not shipped: python -m editing.shipped_stats " \
                              f"--method {method}"
        digest = hashlib.sha256((folders[0] / name).read_bytes()).hexdigest()
        assert digest == files[name]["sha256"]
