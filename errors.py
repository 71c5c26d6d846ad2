"""Domain errors. Code below the UI raises these; only the edge (ui.py, CLI) turns them into
user-facing text, so the services stay testable and the messages stay in one voice."""


class AmendError(Exception):
    """Base class: a failure the user can understand and act on."""


class ModelNotFoundError(AmendError):
    """The model path given with --model does not exist or is not a causal-LM folder."""


class ModelLoadError(AmendError):
    """The model exists but could not be loaded (bad files, unsupported architecture)."""


class EditNotFoundError(AmendError):
    """An action named an edit id that is not in the store."""


class InvalidEditError(AmendError):
    """An edit failed validation (empty subject, subject not in prompt, too long...)."""


class ConfigError(AmendError):
    """A hyperparameter or settings file is missing a field or has a wrong value."""


class StoreError(AmendError):
    """The database file cannot be used (damaged, not a database); it is left untouched."""
