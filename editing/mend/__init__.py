"""MEND: a trained hyper-network that turns an edit's gradient into a weight update."""
from editing.mend.apply import apply_mend, load_editor, mend_delta

__all__ = ["apply_mend", "load_editor", "mend_delta"]
