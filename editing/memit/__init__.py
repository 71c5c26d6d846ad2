"""MEMIT: a batch of edits spread over a range of MLP layers (editing/memit/memit.py)."""
