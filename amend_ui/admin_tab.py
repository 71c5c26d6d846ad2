"""The Admin tab: review the stored edits, export and import them, promote them into the
model's weights and roll promotions back.

Its own module because it is most of the page; one function per section of the tab, each
laying out its widgets and wiring their events. Every handler takes the session's unlocked
flag (`admin`, a gr.State) first, so it is not among the HTTP API's inputs; the api names and
their argument order are what gradio_client callers (tests/test_e2e.py) rely on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.components import Component

from amend_ui.handlers import (
    AUDIT_COLUMNS,
    EDIT_COLUMNS,
    MODEL_FORMATS,
    SUGGEST_COLUMNS,
    WEIGHT_COLUMNS,
    ReviewHandlers,
    WeightHandlers,
    first_id,
)
from editing.registry import NAMES

STATUS_CHOICES = ["all", "active", "superseded", "rejected", "promoted", "pending"]
SOURCE_CHOICES = ["all", "chat", "form", "import", "admin", "eval", "bench"]
PAGE_SIZES = [25, 50, 100, 200]
METHOD_CHOICES = list(NAMES)


# Shift- or ctrl-click adds a row to the selection: Gradio's select event does not carry the
# modifier keys, so the page remembers them (page.PAGE_HEAD) and this passes them along.
WITH_MODIFIER = "(selection, add) => [selection, !!window.amendAddToSelection]"
# Column widths that fit a 1400 px page without breaking a word (the browser test checks).
EDIT_WIDTHS = ["4%", "10%", "11%", "20%", "8%", "8%", "12%", "7%", "8%", "12%"]
AUDIT_WIDTHS = ["13%", "8%", "16%", "8%", "55%"]
WEIGHT_WIDTHS = ["3%", "7%", "11.5%", "5.5%", "9%", "10.5%", "8%", "10%", "8.5%", "10.5%", "8%",
                 "8.5%"]  # Status holds "committed" on one line at 1024 px


@dataclass(frozen=True)
class AdminView:
    """The Admin tab's shared pieces: the session's unlocked flag, the edits filters, the
    selection every action reads, and the Refresh button."""

    admin: gr.State
    filters: list[Component]
    selection: gr.Textbox
    refresh: gr.Button


def build_admin_tab(demo: gr.Blocks, review: ReviewHandlers, weights: WeightHandlers,
                    access_open: bool) -> None:
    """Lay out the Admin tab inside `demo`. Everything on it is redrawn whenever the tab is
    opened, on page load, when the selection changes and after every action, so no table or
    message is older than the last thing done; Refresh redraws it through the API's own
    endpoints, one beside each table (each read once)."""
    with gr.Tab("Admin") as tab:
        admin = gr.State(access_open)
        with gr.Row(visible=not access_open):
            password = gr.Textbox(label="Admin password (shared mode)", type="password",
                                  scale=3)
            unlock_button = gr.Button("Unlock", scale=1)
            unlock_result = gr.Markdown()
        audit = gr.Dataframe(headers=AUDIT_COLUMNS, interactive=False, wrap=True,
                             elem_id="audit-table", elem_classes=["amend-table"],
                             column_widths=AUDIT_WIDTHS, max_height=320, render=False)
        view, edits_shown = _edits_table(review, admin)
        outputs = [*edits_shown, audit]  # what an edit action returns after its message
        action_result, history, review_events = _edit_actions(review, view, outputs)
        review_events.append(_export_import(review, view, [action_result, *outputs]))
        weights_shown, promotion_result, weight_events = _weights_section(weights, view)
        gr.Markdown("### Audit log")
        audit.render()
        view.refresh.click(review.audit_rows, admin, audit, api_name="audit_log")

    def redraw(admin_ok: bool, selection: str, *filters: Any) -> tuple:
        return (*review.list_edits(admin_ok, *filters), review.audit_rows(admin_ok),
                review.selected_history(admin_ok, selection),
                weights.weight_rows(admin_ok), weights.suggestion_rows(admin_ok),
                weights.promotion_chart(admin_ok), weights.weights_state(admin_ok))

    again = dict(fn=redraw, inputs=[admin, view.selection, *view.filters],
                 outputs=[*edits_shown, audit, history, *weights_shown], api_name=False,
                 show_progress="hidden")
    for event in (tab.select, demo.load, view.selection.change):
        event(**again)
    for events, stale in ((review_events, promotion_result), (weight_events, action_result)):
        for event in events:  # the other section's message no longer says what is true
            event.then(lambda: "", None, stale, api_name=False, show_progress="hidden"
                       ).then(**again)
    unlock_button.click(review.unlock, password, [admin, unlock_result], api_name="unlock"
                        ).then(**again)


def _edits_table(review: ReviewHandlers, admin: gr.State) -> tuple[AdminView, list[Component]]:
    """Filters, paging, the table of edits and the selection that clicks on it fill; returns
    the view and the two things the redraw fills here (the table and its page line)."""
    gr.Markdown("### Corrections")
    with gr.Row():
        search = gr.Textbox(label="Search", scale=3)
        status_filter = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", scale=1)
        source_filter = gr.Dropdown(SOURCE_CHOICES, value="all", label="Source", scale=1)
        min_hits = gr.Number(0, label="Asked at least", precision=0, scale=1)
        max_age = gr.Number(0, label="Newer than (days, 0 = any)", scale=1)
        conflicts = gr.Checkbox(label="Conflicts only", scale=1)
    with gr.Row():
        page = gr.Number(1, label="Page", precision=0, minimum=1, scale=1)
        page_size = gr.Dropdown(PAGE_SIZES, value=50, label="Per page", scale=1)
        page_info = gr.Markdown()
        refresh = gr.Button("Refresh", scale=1, elem_id="admin-refresh")
    gr.Markdown("Click a row to select that edit; shift-click (or ctrl-click) more rows to "
                "add them. Every action below works on the selection.")
    edits = gr.Dataframe(headers=EDIT_COLUMNS, interactive=False, wrap=True,
                         elem_id="edits-table", elem_classes=["amend-table"],
                         column_widths=EDIT_WIDTHS, max_height=420)
    with gr.Row():
        selection = gr.Textbox(label="Selected edits (ids: click rows above, or type them)",
                               placeholder="3, 7, 12", scale=4, elem_id="edit-ids")
        add_flag = gr.Checkbox(visible=False)
        clear = gr.Button("Clear selection", scale=1, elem_id="clear-selection")
    filters = [search, status_filter, source_filter, min_hits, max_age, conflicts, page,
               page_size]
    refresh.click(review.list_edits, [admin, *filters], [edits, page_info],
                  api_name="list_edits")
    for trigger in (search.submit, status_filter.change, source_filter.change,
                    conflicts.change, page.submit, page_size.change):
        trigger(review.list_edits, [admin, *filters], [edits, page_info], api_name=False)
    edits.select(review.select_row, [selection, add_flag], selection, js=WITH_MODIFIER,
                 api_name=False, show_progress="hidden")
    clear.click(lambda: "", None, selection, api_name=False, show_progress="hidden")
    return AdminView(admin, filters, selection, refresh), [edits, page_info]


def _edit_actions(review: ReviewHandlers, view: AdminView,
                  tables: list[Component]) -> tuple[Component, Component, list]:
    """What an admin does to the selected edits; each returns its message, then `tables`
    (edits table, page line, audit log: the API's callers read them). Returns the message
    area, the selected edit's history panel, and the actions' events."""
    with gr.Row():
        approve = gr.Button("Approve / reactivate", scale=1, elem_id="approve")
        reject = gr.Button("Reject", scale=1, elem_id="reject")
        merge_button = gr.Button("Merge (keep the first id)", scale=1)
        show_history = gr.Button("History", scale=1, visible=False)
    with gr.Row():
        new_target = gr.Textbox(label="New answer for the selected edit", scale=3)
        change_button = gr.Button("Change answer", scale=1)
    with gr.Row():
        aliases_box = gr.Textbox(label="Other names of the selected edit's subject "
                                       "(comma-separated; replaces the list)",
                                 placeholder="the Big Apple, NYC", scale=3)
        aliases_button = gr.Button("Set aliases", scale=1)
    action_result = gr.Markdown(elem_id="action-result")
    with gr.Accordion("History of the selected edit", open=True):
        edit_history = gr.Markdown(elem_id="edit-history")
    admin, ids_box, filters = view.admin, view.selection, view.filters
    outputs = [action_result, *tables]
    events = [
        approve.click(lambda a, i, *f: review.set_status(a, i, "active", *f),
                      [admin, ids_box, *filters], outputs, api_name="approve"),
        reject.click(lambda a, i, *f: review.set_status(a, i, "rejected", *f),
                     [admin, ids_box, *filters], outputs, api_name="reject"),
        change_button.click(review.change_target, [admin, ids_box, new_target, *filters],
                            outputs, api_name="change_target"),
        merge_button.click(review.merge, [admin, ids_box, *filters], outputs, api_name="merge"),
        aliases_button.click(review.set_aliases, [admin, ids_box, aliases_box, *filters],
                             outputs, api_name="set_aliases"),
    ]
    show_history.click(review.history, [admin, ids_box], edit_history, api_name="history")
    view.refresh.click(review.selected_history, [admin, ids_box], edit_history,
                       api_name=False, show_progress="hidden")
    return action_result, edit_history, events


def _export_import(review: ReviewHandlers, view: AdminView, outputs: list[Component]):
    """All edits to a JSON file and back; returns the import's event."""
    with gr.Accordion("Export / import edits (JSON)", open=False):
        with gr.Row():
            export_button = gr.Button("Export all edits")
            exported = gr.File(label="Export file", interactive=False)
        with gr.Row():
            upload = gr.File(label="File to import", type="binary", file_types=[".json"])
            import_button = gr.Button("Import")
    export_button.click(review.export_file, view.admin, exported, api_name="export_edits")
    return import_button.click(review.import_file, [view.admin, upload, *view.filters],
                               outputs, api_name="import_edits")


def _weights_section(weights: WeightHandlers, view: AdminView):
    """Promote the selected edits into the weights, see what each promotion scored, roll one
    back, or trace where the model recalls a fact. Returns what the redraw fills here
    (weight table, candidates, chart, live state), the message area, and the events."""
    gr.Markdown("### Promote into the model's weights")
    gr.Markdown("Promotion candidates: every active edit, ready ones first (an edit is ready "
                "once asked about often enough, with no conflicting edit). Any active edit "
                "can be promoted.")
    suggestions = gr.Dataframe(headers=SUGGEST_COLUMNS, interactive=False, wrap=True,
                               elem_id="suggestions-table", elem_classes=["amend-table"],
                               column_widths=["4%", "14%", "26%", "12%", "8%", "36%"],
                               max_height=260)
    with gr.Row():
        method = gr.Dropdown(METHOD_CHOICES, value="rome", label="Method", scale=1,
                             elem_id="promote-method")
        promote_button = gr.Button("Promote the selected edits", variant="primary", scale=2,
                                   elem_id="promote")
    promotion_result = gr.Markdown(elem_id="promotion-result")
    gr.Markdown("#### Weight edits (applied in order at every start; click one to roll it "
                "back)")
    gr.Markdown("Scores from 0 to 1, teacher-forced and in free-generation chat: "
                "**reliability**, the edit's own question; **paraphrases** "
                "(generalization), the question reworded; **locality**, unrelated facts "
                "unchanged; **portability**, facts that follow from the edit.")
    table = gr.Dataframe(headers=WEIGHT_COLUMNS, interactive=False, wrap=True,
                         elem_id="weights-table", elem_classes=["amend-table"],
                         column_widths=WEIGHT_WIDTHS)
    live_weights = gr.Markdown()
    chart = gr.Image(label="Scores of each promotion (hollow grey: rolled back)", type="pil",
                     format="png", interactive=False, elem_id="promotion-chart",
                     buttons=["download"])
    with gr.Row():
        weight_id = gr.Number(None, label="Weight edit id (click its row)", precision=0,
                              elem_id="weight-id")
        rollback_button = gr.Button("Roll back", elem_id="rollback")
        trace_id = gr.Number(None, label="Edit id to trace (the selection's first)",
                             precision=0, elem_id="trace-id")
        trace_button = gr.Button("Causal trace", elem_id="trace")
    heatmap = gr.Image(label="Causal trace: where the model recalls the fact", type="filepath",
                       elem_id="trace-image", show_label=True)
    gr.Markdown("#### Export the model (the live weights, with every committed weight edit)")
    with gr.Row():
        export_kind = gr.Dropdown(MODEL_FORMATS, value=MODEL_FORMATS[0], label="Format",
                                  scale=2, elem_id="export-kind")
        export_button = gr.Button("Export the model", scale=1, elem_id="export-model")
    export_result = gr.Markdown(elem_id="export-result")
    export_button.click(weights.export_model, [view.admin, export_kind], export_result,
                        api_name="export_model")
    admin = view.admin
    changed = [promotion_result, table, suggestions]  # what the API's callers read
    events = [
        promote_button.click(weights.promote, [admin, view.selection, method], changed,
                             api_name="promote"),
        rollback_button.click(weights.rollback, [admin, weight_id], changed,
                              api_name="rollback"),
    ]
    table.select(weights.select_weight_row, None, weight_id, api_name=False,
                 show_progress="hidden")
    trace_button.click(weights.trace_edit, [admin, trace_id], heatmap, api_name="trace")
    view.selection.change(first_id, view.selection, trace_id, api_name=False,
                          show_progress="hidden")
    view.refresh.click(weights.weight_rows, admin, table, api_name="weight_edits")
    view.refresh.click(weights.suggestion_rows, admin, suggestions, api_name="suggestions")
    view.refresh.click(weights.weights_state, admin, live_weights, api_name="weights_state")
    view.refresh.click(weights.promotion_chart, admin, chart, api_name=False,
                       show_progress="hidden")
    return [table, suggestions, chart, live_weights], promotion_result, events
