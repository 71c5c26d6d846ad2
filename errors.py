"""Domain errors. Code below the UI raises these; only the edge (the UI, a command line) turns
them into user-facing text, so the services stay testable and the messages stay in one voice."""
import sys
from collections.abc import Callable


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


def run_command(main: Callable[[], int | None]) -> None:
    """Run a command line's `main`: an AmendError (missing data, bad config) ends it with one
    line on stderr and exit code 2 instead of a traceback."""
    try:
        sys.exit(main())
    except AmendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
