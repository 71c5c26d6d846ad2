"""ROME: a rank-one update of one MLP output projection per fact (see rome.py)."""
from editing.rome.rome import apply_rome

__all__ = ["apply_rome"]
