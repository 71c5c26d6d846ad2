"""The whole app at start-up: the Assistant (ask and correct) with its weight edits attached
and the committed ones replayed onto the base model. Lives in `editing/` because the
assistant layer must not import the editing layer."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from assistant.router import Assistant
from assistant.runtime import build_assistant
from config import AppSettings
from editing.promote import WeightEdits, guard_config
from editing.serving import serve

log = logging.getLogger(__name__)


def build_app(settings: AppSettings, progress: Callable[[str], None] = log.info) -> Assistant:
    """The assistant of `build_assistant` plus `assistant.weights`, committed deltas replayed,
    the chat engine (llama.cpp where it can serve) loaded on the live weights, and (on a
    shared store) other instances' weight edits followed."""
    assistant = build_assistant(settings, progress)
    assistant.weights = WeightEdits.for_assistant(
        assistant, Path(settings.data_dir), guard=guard_config(settings.promotion_config))
    for message in assistant.weights.replay(progress):
        progress(message)
    assistant.weights.engine = serve(assistant.llm, Path(settings.data_dir), settings.engine,
                                     settings.threads, progress)
    assistant.weights.follow(progress)
    return assistant
