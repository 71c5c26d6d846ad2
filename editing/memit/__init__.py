"""MEMIT: a batch of edits spread over a range of MLP layers (see memit.py)."""
from editing.memit.memit import apply_memit

__all__ = ["apply_memit"]
