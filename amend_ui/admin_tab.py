"""The Admin tab: review the stored edits, export and import them, promote them into the
model's weights and roll promotions back.

Its own module because it is most of the page; one function per section of the tab, each
laying out its widgets and wiring their events. Every handler takes the session's unlocked
flag (`admin`, a gr.State) first, so it is not among the HTTP API's inputs; the api names and
their argument order are what gradio_client callers (tests/test_e2e.py) rely on.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from amend_ui.handlers import (
    AUDIT_COLUMNS,
    EDIT_COLUMNS,
    SUGGEST_COLUMNS,
    WEIGHT_COLUMNS,
    ReviewHandlers,
    WeightHandlers,
)
from editing.registry import NAMES

STATUS_CHOICES = ["all", "active", "superseded", "rejected", "promoted", "pending"]
SOURCE_CHOICES = ["all", "chat", "form", "import", "admin", "eval", "bench"]
PAGE_SIZES = [25, 50, 100, 200]
METHOD_CHOICES = list(NAMES)


@dataclass(frozen=True)
class EditsTable:
    """What the sections below the edits table act on: every edit action takes the filters
    after its own inputs and redraws the table (`shown`) with them."""

    admin: gr.State
    filters: list[Component]
    shown: list[Component]
    refresh: gr.Button


def build_admin_tab(demo: gr.Blocks, review: ReviewHandlers, weights: WeightHandlers,
                    access_open: bool) -> None:
    """Lay out the Admin tab inside `demo`; its page-load events go on `demo`."""
    with gr.Tab("Admin"):
        admin = gr.State(access_open)
        with gr.Row(visible=not access_open):
            password = gr.Textbox(label="Admin password (shared mode)", type="password",
                                  scale=3)
            unlock_button = gr.Button("Unlock", scale=1)
            unlock_result = gr.Markdown()
        table = _edits_table(demo, review, admin)
        outputs = _edit_actions(demo, review, table)
        _export_import(review, table, outputs)
        _weights_section(demo, weights, admin, table.refresh)
        unlock_button.click(review.unlock, password, [admin, unlock_result], api_name="unlock")


def _edits_table(demo: gr.Blocks, review: ReviewHandlers, admin: gr.State) -> EditsTable:
    """Filters, paging and the table of edits; any filter change redraws it."""
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
    edits = gr.Dataframe(headers=EDIT_COLUMNS, interactive=False, wrap=True,
                         elem_id="edits-table")
    table = EditsTable(admin, [search, status_filter, source_filter, min_hits, max_age,
                               conflicts, page, page_size], [edits, page_info], refresh)
    redraw = [admin, *table.filters], table.shown
    refresh.click(review.list_edits, *redraw, api_name="list_edits")
    demo.load(review.list_edits, *redraw, api_name=False)
    for trigger in (search.submit, status_filter.change, source_filter.change,
                    conflicts.change, page.submit, page_size.change):
        trigger(review.list_edits, *redraw, api_name=False)
    return table


def _edit_actions(demo: gr.Blocks, review: ReviewHandlers,
                  table: EditsTable) -> list[Component]:
    """What an admin does to the edits named by id, and the audit log that records it;
    returns an action's outputs: its message, the table, the audit log."""
    with gr.Row():
        ids_box = gr.Textbox(label="Edit ids (one, or several for bulk actions)",
                             placeholder="3, 7, 12", scale=3, elem_id="edit-ids")
        approve = gr.Button("Approve / reactivate", scale=1, elem_id="approve")
        reject = gr.Button("Reject", scale=1)
        show_history = gr.Button("History", scale=1)
    with gr.Row():
        new_target = gr.Textbox(label="New target for the edit", scale=3)
        change_button = gr.Button("Change target", scale=1)
        merge_button = gr.Button("Merge (keep the first id)", scale=1)
    with gr.Row():
        aliases_box = gr.Textbox(label="Other names of the edit's subject "
                                       "(comma-separated; replaces the list)",
                                 placeholder="the Big Apple, NYC", scale=3)
        aliases_button = gr.Button("Set aliases", scale=1)
    action_result = gr.Markdown(elem_id="action-result")
    edit_history = gr.Markdown()
    gr.Markdown("### Audit log")
    audit = gr.Dataframe(headers=AUDIT_COLUMNS, interactive=False, wrap=True)
    demo.load(review.audit_rows, table.admin, audit, api_name=False)
    table.refresh.click(review.audit_rows, table.admin, audit, api_name="audit_log")
    admin, filters = table.admin, table.filters
    outputs = [action_result, *table.shown, audit]
    approve.click(lambda a, i, *f: review.set_status(a, i, "active", *f),
                  [admin, ids_box, *filters], outputs, api_name="approve")
    reject.click(lambda a, i, *f: review.set_status(a, i, "rejected", *f),
                 [admin, ids_box, *filters], outputs, api_name="reject")
    change_button.click(review.change_target, [admin, ids_box, new_target, *filters], outputs,
                        api_name="change_target")
    merge_button.click(review.merge, [admin, ids_box, *filters], outputs, api_name="merge")
    aliases_button.click(review.set_aliases, [admin, ids_box, aliases_box, *filters], outputs,
                         api_name="set_aliases")
    show_history.click(review.history, [admin, ids_box], edit_history, api_name="history")
    return outputs


def _export_import(review: ReviewHandlers, table: EditsTable,
                   outputs: list[Component]) -> None:
    """All edits to a JSON file and back; an import redraws the table and the audit log."""
    with gr.Accordion("Export / import edits (JSON)", open=False):
        with gr.Row():
            export_button = gr.Button("Export all edits")
            exported = gr.File(label="Export file", interactive=False)
        with gr.Row():
            upload = gr.File(label="File to import", type="binary", file_types=[".json"])
            import_button = gr.Button("Import")
    export_button.click(review.export_file, table.admin, exported, api_name="export_edits")
    import_button.click(review.import_file, [table.admin, upload, *table.filters],
                        outputs, api_name="import_edits")


def _weights_section(demo: gr.Blocks, weights: WeightHandlers, admin: gr.State,
                     refresh: gr.Button) -> None:
    """Promote edits into the weights, see what each promotion scored, roll one back, or
    trace where the model recalls a fact."""
    gr.Markdown("### Promote into the model's weights")
    gr.Markdown("Ready to promote (active, asked about often, no conflict):")
    suggestions = gr.Dataframe(headers=SUGGEST_COLUMNS, interactive=False, wrap=True)
    with gr.Row():
        promote_ids = gr.Textbox(label="Edit ids to promote", placeholder="3, 7", scale=3,
                                 elem_id="promote-ids")
        method = gr.Dropdown(METHOD_CHOICES, value="rome", label="Method", scale=1,
                             elem_id="promote-method")
        promote_button = gr.Button("Promote", variant="primary", scale=1, elem_id="promote")
    promotion_result = gr.Markdown(elem_id="promotion-result")
    gr.Markdown("#### Weight edits (applied in order at every start)")
    table = gr.Dataframe(headers=WEIGHT_COLUMNS, interactive=False, wrap=True,
                         elem_id="weights-table")
    live_weights = gr.Markdown()
    chart = gr.Image(label="Scores of each promotion (hollow grey: rolled back)", type="pil",
                     format="png", interactive=False)
    with gr.Row():
        weight_id = gr.Number(label="Weight edit id", precision=0, elem_id="weight-id")
        rollback_button = gr.Button("Roll back", elem_id="rollback")
        trace_id = gr.Number(label="Edit id to trace", precision=0)
        trace_button = gr.Button("Causal trace")
    heatmap = gr.Image(label="Causal trace (where the model recalls the fact)",
                       type="filepath")
    changed = [promotion_result, table, suggestions]
    for button, handler, inputs, name in (
            (promote_button, weights.promote, [admin, promote_ids, method], "promote"),
            (rollback_button, weights.rollback, [admin, weight_id], "rollback")):
        button.click(handler, inputs, changed, api_name=name
                     ).then(weights.promotion_chart, admin, chart, api_name=False
                            ).then(weights.weights_state, admin, live_weights, api_name=False)
    trace_button.click(weights.trace_edit, [admin, trace_id], heatmap, api_name="trace")
    refresh.click(weights.weight_rows, admin, table, api_name="weight_edits")
    refresh.click(weights.suggestion_rows, admin, suggestions, api_name="suggestions")
    demo.load(weights.weight_rows, admin, table, api_name=False)
    demo.load(weights.promotion_chart, admin, chart, api_name=False)
    refresh.click(weights.promotion_chart, admin, chart, api_name=False)
    refresh.click(weights.weights_state, admin, live_weights, api_name="weights_state")
    demo.load(weights.suggestion_rows, admin, suggestions, api_name=False)
