"""The page's shape, built without loading a model: the HTTP API that gradio_client callers
(tests/test_e2e.py) use, the element ids the browser test clicks, and the annotations and
defaults through which Gradio hands handlers the request and a progress tracker. The handlers'
behaviour is tested end to end (test_e2e.py, test_browser.py)."""
from __future__ import annotations

import inspect
import json
import typing

import gradio as gr
import pytest

from amend_ui.handlers import (
    ChatHandlers,
    ReviewHandlers,
    WeightHandlers,
    audit_detail,
    audit_edit,
    cost,
    first_id,
)
from amend_ui.page import build_ui
from assistant.access import AdminAccess
from assistant.runtime import Runtime
from config import AppSettings

# api name -> number of arguments (admin endpoints: their own inputs, then the 8 filters)
API = {"/status": 0, "/chat": 3, "/correct": 3, "/list_edits": 8, "/audit_log": 0,
       "/approve": 9, "/reject": 9, "/change_target": 10, "/merge": 9, "/set_aliases": 10,
       "/history": 1, "/export_edits": 0, "/import_edits": 9, "/promote": 2, "/rollback": 1,
       "/export_model": 1, "/trace": 1, "/weight_edits": 0, "/suggestions": 0,
       "/weights_state": 0, "/unlock": 1}
ELEM_IDS = {"status", "chatbot", "chat-trace", "chat-input", "chat-send", "admin-refresh",
            "edits-table", "edit-ids", "clear-selection", "approve", "reject", "action-result",
            "edit-history", "suggestions-table", "promote-method", "promote",
            "promotion-result", "weights-table", "promotion-chart", "weight-id", "rollback",
            "trace-id", "trace", "trace-image", "export-kind", "export-model", "export-result",
            "audit-table"}


def test_page_api_and_element_ids(tmp_path):
    runtime = Runtime(AppSettings(data_dir=tmp_path, shared=True))  # never started
    demo = build_ui(runtime, AdminAccess(shared=True))
    api = demo.get_api_info()["named_endpoints"]
    assert {name: len(info["parameters"]) for name, info in api.items()} == API
    config = demo.get_config_file()
    ids = {c["props"].get("elem_id") for c in config["components"]} - {None}
    assert ids == ELEM_IDS


def test_gradio_passes_request_and_progress():
    # Gradio reads handlers' hints with typing.get_type_hints and silently ignores them all
    # when one does not resolve at run time; then chat would not get the session's request.
    for cls in (ChatHandlers, ReviewHandlers, WeightHandlers):
        for name, handler in vars(cls).items():
            if callable(handler) and not name.startswith("_"):
                typing.get_type_hints(handler)
    for handler in (ChatHandlers.chat, ChatHandlers.correct):
        assert typing.get_type_hints(handler)["request"] is gr.Request, handler.__name__
    for handler in (WeightHandlers.promote, WeightHandlers.trace_edit):
        progress = inspect.signature(handler).parameters["progress"].default
        assert isinstance(progress, gr.Progress), handler.__name__


def test_selection_follows_clicks_and_modifier_keys():
    from gradio.events import SelectData

    handlers = ReviewHandlers(Runtime(AppSettings(data_dir=".")), AdminAccess(shared=False))

    def click(selection: str, row_id: int, add: bool) -> str:
        event = SelectData(None, {"index": [0, 1], "value": "x", "row_value": [row_id, "x"]})
        return handlers.select_row(selection, add, event)

    assert click("", 3, False) == "3"
    assert click("3", 7, False) == "7"  # a plain click selects that row only
    assert click("3", 7, True) == "3, 7"  # shift- or ctrl-click adds it
    assert click("3, 7", 3, True) == "7"  # ...or takes it out again
    assert click("junk, 4", 5, True) == "4, 5"  # what is not an id is dropped
    assert first_id("9, 2") == 9 and first_id("none") is None


def test_audit_details_read_as_words():
    detail = json.dumps({"weight_edit": 2, "edits": [1, 3], "scores": {
        "reliability": 1.0, "chat_locality": 0.3333, "delta_norm": 4.3,
        "chat_locality_changed": ["a long list"]}})
    assert audit_detail(detail) == ("weight edit #2, edits: #1, #3, scores: reliability 1, "
                                    "chat locality 0.333")
    assert audit_detail(json.dumps({"source": "chat", "target_new": "Rome"})) == \
        "source: chat, new answer: Rome"
    assert audit_detail("not json") == "not json"
    assert audit_edit({"edit_id": None, "detail": json.dumps({"edits": [4, 5]})}) == "#4, #5"
    assert cost({"seconds": 32.7, "peak_rss_mb": 2182}) == "33 s, 2.1 GB"


def test_long_work_is_named_on_the_status_line():
    runtime = Runtime(AppSettings(data_dir="."))
    with runtime.activity("Promoting edit #3 with rome") as report:
        report("step 12/25")
        assert runtime.status == "Promoting edit #3 with rome: step 12/25"
    assert runtime.status.startswith("Ready. Last: Promoting edit #3 with rome (done at ")
    with pytest.raises(ValueError), runtime.activity("Causal trace of edit #3"):
        raise ValueError("boom")
    assert "(failed at " in runtime.status
