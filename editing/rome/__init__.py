"""ROME: a rank-one update of one MLP output projection per fact (editing/rome/rome.py); the
key and value search shared with MEMIT (compute.py) and its packed attention (attention.py)."""
