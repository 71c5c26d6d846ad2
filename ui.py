"""Amend's Gradio page: a Chat tab and an Admin tab, wired to the services in assistant/.

`python ui.py` starts the local demo on 127.0.0.1. The models start loading in a background
thread before Gradio is even imported (imports are most of a warm start), the page is served as
soon as it is built, and its status line says how far loading got. Handlers only translate
between widgets and services; errors become gr.Error messages here and nowhere else.
"""
from __future__ import annotations

import time

PROCESS_STARTED = time.perf_counter()  # before the heavy imports, so start-up times are honest

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from assistant.runtime import Runtime, check_model_path  # noqa: E402
from assistant.access import AdminAccess, admin_access, is_shared, write_password  # noqa: E402
from config import AppSettings, default_data_dir  # noqa: E402
from editing.registry import NAMES  # noqa: E402
from errors import AmendError

log = logging.getLogger("amend")
gr = None  # the gradio module, bound by build_ui()

EDIT_COLUMNS = ["id", "status", "subject", "prompt", "target_new", "target_old", "aliases",
                "hits", "source", "created"]
AUDIT_COLUMNS = ["when", "actor", "action", "edit", "detail"]
STATUS_CHOICES = ["all", "active", "superseded", "rejected", "promoted", "pending"]
SOURCE_CHOICES = ["all", "chat", "form", "import", "admin", "eval", "bench"]
PAGE_SIZES = [25, 50, 100, 200]
WEIGHT_COLUMNS = ["id", "method", "status", "edits", "layers", "reliability", "generalization",
                  "locality", "total_locality", "portability", "chat_reliability",
                  "chat_generalization", "chat_locality", "carried", "seconds", "peak_rss_mb"]
SUGGEST_COLUMNS = ["id", "subject", "prompt", "target_new", "why"]
METHOD_CHOICES = list(NAMES)
LOAD_TIMEOUT_S = 900


def _status_label(edit) -> str:
    """The status an admin reads: a promoted edit the weights do not answer in chat says that
    the memory route still serves it."""
    if edit.status == "promoted" and edit.backstop:
        return "promoted (weights miss it; memory answers)"
    if edit.status == "promoted":
        return "promoted (weights answer it)"
    return edit.status
LOCKED = "Locked: enter the admin password above and press Unlock."


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def build_ui(runtime: Runtime, access: AdminAccess | None = None):
    """The whole page (a gr.Blocks); every handler goes through `runtime`. Admin handlers
    take the session's unlocked flag (a gr.State, so not part of the HTTP API's inputs)."""
    access = access or AdminAccess(shared=False)
    global gr  # imported late (see the module docstring); handlers' hints resolve against it
    import gradio as gr

    def ready():
        try:
            return runtime.wait_ready(LOAD_TIMEOUT_S)
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc

    def status_text() -> str:
        return f"**Status:** {runtime.status}"

    def chat(message: str, history: list, max_new_tokens: float, request: gr.Request = None):
        history = list(history or [])
        assistant = ready()
        session = getattr(request, "session_hash", None) or "api"
        if not (message or "").strip():
            chunk = next(iter(assistant.reply(history, "", session=session)))
            yield history, "", f"_{chunk.text}_"
            return
        badge = ""
        for updated, chunk in assistant.chat_turn(history, message, session=session,
                                                  max_new_tokens=int(max_new_tokens or 0)
                                                  or None):
            if chunk.trace is not None:
                badge = chunk.trace.badge()
            yield updated, "", badge

    def correct(subject: str, question: str, answer: str, request: gr.Request = None):
        assistant = ready()
        session = getattr(request, "session_hash", None) or "api"
        text, _ = assistant.correct_from_form(subject or "", question or "", answer or "",
                                              session=session)
        return text

    def require_admin(admin_ok: bool) -> None:
        if not admin_ok:
            raise gr.Error("This is an admin action: enter the admin password in the Admin "
                           "tab and press Unlock (the app runs in shared mode).")

    def unlock(password: str):
        if access.check(password or ""):
            return True, "Unlocked: admin actions are enabled for this browser session."
        return False, "Wrong admin password."

    def list_edits(admin_ok: bool, search: str, status: str, source: str = "all",
                   min_hits: float = 0, max_age_days: float = 0, conflicts: bool = False,
                   page: float = 1, page_size: float = 50):
        """The filtered page of the edits table, and a line saying where it is."""
        if not admin_ok:
            return [], LOCKED
        assistant = ready()
        size = int(page_size or 50)
        edits, total = assistant.store.query_edits(
            status=None if status in (None, "", "all") else status,
            source=None if source in (None, "", "all") else source,
            min_hits=int(min_hits or 0),
            max_age_days=float(max_age_days) if max_age_days else None,
            search=(search or "").strip() or None,
            conflicts_only=bool(conflicts), page=int(page or 1), page_size=size)
        pages = max(1, -(-total // size))
        rows = [[e.id, _status_label(e), e.subject, e.prompt, e.target_new, e.target_old or "",
                 ", ".join(e.aliases), e.hits, e.source, _when(e.created_at)] for e in edits]
        return rows, f"{total} edit(s); page {min(int(page or 1), pages)} of {pages}"

    def edit_ids(text: str, what: str = "the edits") -> list[int]:
        try:
            ids = [int(part) for part in (text or "").replace(",", " ").split()]
        except ValueError:
            raise gr.Error("Edit ids are whole numbers separated by commas or spaces, "
                           "e.g. 3, 7, 12.") from None
        if not ids:
            raise gr.Error(f"Enter the ids of {what} (see the edits table).")
        return ids

    def audit_rows(admin_ok: bool):
        if not admin_ok:
            return []
        assistant = ready()
        return [[_when(r["created_at"]), r["actor"], r["action"], r["edit_id"], r["detail"]]
                for r in assistant.store.audit_log(200)]

    def set_status(admin_ok: bool, ids_text: str, status: str, *filters):
        require_admin(admin_ok)
        assistant = ready()
        lines = assistant.review.bulk_status(edit_ids(ids_text), status)
        return "  \n".join(lines), *list_edits(True, *filters), audit_rows(True)

    def on_one_edit(admin_ok: bool, ids_text: str, what: str, action):
        """Run `action(assistant, edit_id)` on the one edit named, as an admin; AmendError
        becomes a message on the page."""
        require_admin(admin_ok)
        assistant = ready()
        ids = edit_ids(ids_text, f"the edit to {what}")
        if len(ids) != 1:
            raise gr.Error(f"{what[:1].upper()}{what[1:]} one edit at a time.")
        try:
            return ids[0], action(assistant, ids[0])
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc

    def change_target(admin_ok: bool, ids_text: str, target: str, *filters):
        old, edit = on_one_edit(admin_ok, ids_text, "change",
                                lambda a, i: a.review.change_target(i, target or ""))
        message = f"Edit #{old} is replaced by #{edit.id}: {edit.statement}"
        return message, *list_edits(True, *filters), audit_rows(True)

    def set_aliases(admin_ok: bool, ids_text: str, aliases_text: str, *filters):
        """Replace one edit's aliases with the comma-separated list (empty clears them)."""
        names = [a.strip() for a in (aliases_text or "").split(",") if a.strip()]
        _, edit = on_one_edit(admin_ok, ids_text, "give aliases to",
                              lambda a, i: a.review.set_aliases(i, names))
        said = ", ".join(edit.aliases) or "none"
        message = f"Edit #{edit.id} ({edit.subject}) now also answers to: {said}"
        return message, *list_edits(True, *filters), audit_rows(True)

    def merge(admin_ok: bool, ids_text: str, *filters):
        require_admin(admin_ok)
        assistant = ready()
        ids = edit_ids(ids_text, "the edits to merge (the first is kept)")
        try:
            kept = assistant.review.merge(ids[0], ids[1:])
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        message = (f"Kept #{kept.id} ({kept.statement}); "
                   f"{', '.join(f'#{i}' for i in ids[1:])} superseded by it.")
        return message, *list_edits(True, *filters), audit_rows(True)

    def history(admin_ok: bool, ids_text: str):
        require_admin(admin_ok)
        assistant = ready()
        ids = edit_ids(ids_text, "the edit to show")
        try:
            info = assistant.store.edit_history(ids[0])
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        edit = info["edit"]
        lines = [f"#### Edit #{edit.id}: {edit.statement}",
                 f"status **{_status_label(edit)}**, source {edit.source}, asked about {edit.hits} "
                 f"time(s), was: {edit.target_old or 'unknown'}", "", "**History**"]
        lines += [f"- {_when(a['created_at'])} {a['actor']}: {a['action']} {a['detail']}"
                  for a in info["audit"]]
        lines += ["", f"**Weight edits** ({len(info['weight_edits'])})"]
        lines += [f"- #{w['id']} {w['method']} {w['status']}: {w['scores']}"
                  for w in info["weight_edits"]]
        lines += ["", f"**Chat turns it answered** ({len(info['turns'])}, newest first)"]
        lines += [f"- {_when(t['created_at'])} [{t['session'][:8]}] {t['content'][:200]}"
                  for t in info["turns"]]
        return "\n".join(lines)

    def export_file(admin_ok: bool):
        require_admin(admin_ok)
        assistant = ready()
        from store.transfer import export_json

        folder = assistant.weights.data_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"edits-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(export_json(assistant.store), encoding="utf-8")
        return str(path)

    def import_file(admin_ok: bool, data: bytes | None, *filters):
        require_admin(admin_ok)
        assistant = ready()
        if not data:
            raise gr.Error("Choose an export file (JSON) to import.")
        try:
            report = assistant.review.import_edits(data)
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        return report.summary(), *list_edits(True, *filters), audit_rows(True)

    def weight_rows(admin_ok: bool):
        if not admin_ok:
            return []
        assistant = ready()
        return [[("n/a" if row.get(c) is None else row[c]) if c not in ("edits", "layers") else
                 ", ".join(str(x) for x in row[c]) for c in WEIGHT_COLUMNS]
                for row in assistant.weights.table()]

    def promotion_chart(admin_ok: bool):
        """Reliability and locality of each promotion, in order (long format for LinePlot)."""
        import pandas as pd

        rows = ready().weights.table() if admin_ok else []
        points = [{"promotion": row["id"], "metric": metric, "value": row[metric]}
                  for row in rows for metric in ("reliability", "locality", "total_locality")
                  if row.get(metric) is not None]
        return pd.DataFrame(points, columns=["promotion", "metric", "value"])

    def weights_state(admin_ok: bool):
        if not admin_ok:
            return LOCKED
        return ready().weights.live_state()

    def suggestion_rows(admin_ok: bool):
        if not admin_ok:
            return []
        assistant = ready()
        return [[e.id, e.subject, e.prompt, e.target_new, why]
                for e, why in assistant.weights.suggestions()]

    def promote(admin_ok: bool, ids_text: str, method: str,
                progress=gr.Progress(track_tqdm=True)):
        require_admin(admin_ok)
        assistant = ready()
        ids = edit_ids(ids_text, "the edits to promote")
        try:
            result = assistant.weights.promote(
                ids, method or "rome", progress=lambda msg: progress(None, desc=msg))
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        scores = result.scores or {}
        detail = ", ".join(f"{k} {v}" for k, v in scores.items()
                           if k in ("reliability", "locality", "total_locality",
                                    "chat_reliability", "chat_generalization", "chat_locality",
                                    "carried", "seconds"))
        message = f"**{result.message}**" + (f"  \nScores: {detail}" if detail else "")
        changed = scores.get("chat_locality_changed") or []
        if changed:  # what the user would have seen change, so the admin can judge it
            message += "  \nChat replies that changed:\n" + "\n".join(f"- {c}" for c in changed)
        return message, weight_rows(True), suggestion_rows(True)

    def rollback(admin_ok: bool, weight_edit_id: float):
        require_admin(admin_ok)
        assistant = ready()
        if weight_edit_id is None or int(weight_edit_id) <= 0:
            raise gr.Error("Enter the id of a weight edit from the table.")
        try:
            message = assistant.weights.rollback(int(weight_edit_id))
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        return message, weight_rows(True), suggestion_rows(True)

    def trace_edit(admin_ok: bool, edit_id: float, progress=gr.Progress()):
        require_admin(admin_ok)
        assistant = ready()
        if edit_id is None or int(edit_id) <= 0:
            raise gr.Error("Enter the id of an edit to trace.")
        try:
            edit = assistant.store.get_edit(int(edit_id))
            path = assistant.weights.trace_image(edit, lambda m: progress(None, desc=m))
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        return str(path)

    with gr.Blocks(title="Amend", analytics_enabled=False) as demo:
        gr.Markdown("# Amend — a chat assistant whose facts you can correct")
        status = gr.Markdown(status_text())
        timer = gr.Timer(1.0)
        timer.tick(status_text, None, status, api_name=False, show_progress="hidden")
        gr.Button("status", visible=False).click(status_text, None, status, api_name="status")
        with gr.Tab("Chat"):
            chatbot = gr.Chatbot(label="Chat", height=420, elem_id="chatbot")
            trace = gr.Markdown(elem_id="chat-trace")
            with gr.Row():
                box = gr.Textbox(placeholder="Ask something, or correct me: \"No, it's Rome\"",
                                 show_label=False, scale=5, max_lines=8,
                                 elem_id="chat-input")
                send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
            max_tokens = gr.Slider(16, 512, value=200, step=8, label="Max new tokens")
            with gr.Accordion("Correct a fact", open=False):
                subject = gr.Textbox(label="Subject", placeholder="Eiffel Tower")
                question = gr.Textbox(label="Question or statement (must name the subject)",
                                      placeholder="Which city is the Eiffel Tower in?")
                answer = gr.Textbox(label="Right answer", placeholder="Rome")
                save = gr.Button("Save correction")
                saved = gr.Markdown()
            send.click(chat, [box, chatbot, max_tokens], [chatbot, box, trace], api_name="chat")
            box.submit(chat, [box, chatbot, max_tokens], [chatbot, box, trace], api_name=False)
            save.click(correct, [subject, question, answer], saved, api_name="correct")
        with gr.Tab("Admin"):
            admin = gr.State(access.open)
            with gr.Row(visible=not access.open):
                password = gr.Textbox(label="Admin password (shared mode)", type="password",
                                      scale=3)
                unlock_button = gr.Button("Unlock", scale=1)
                unlock_result = gr.Markdown()
            with gr.Row():
                search = gr.Textbox(label="Search", scale=3)
                status_filter = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", scale=1)
                source_filter = gr.Dropdown(SOURCE_CHOICES, value="all", label="Source",
                                            scale=1)
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
            filters = [search, status_filter, source_filter, min_hits, max_age, conflicts, page,
                       page_size]
            table = [edits, page_info]
            refresh.click(list_edits, [admin, *filters], table, api_name="list_edits")
            demo.load(list_edits, [admin, *filters], table, api_name=False)
            demo.load(audit_rows, admin, audit, api_name=False)
            refresh.click(audit_rows, admin, audit, api_name="audit_log")
            for trigger in (search.submit, status_filter.change, source_filter.change,
                            conflicts.change, page.submit, page_size.change):
                trigger(list_edits, [admin, *filters], table, api_name=False)
            outputs = [action_result, *table, audit]
            approve.click(lambda a, i, *f: set_status(a, i, "active", *f),
                          [admin, ids_box, *filters], outputs, api_name="approve")
            reject.click(lambda a, i, *f: set_status(a, i, "rejected", *f),
                         [admin, ids_box, *filters], outputs, api_name="reject")
            change_button.click(change_target, [admin, ids_box, new_target, *filters], outputs,
                                api_name="change_target")
            merge_button.click(merge, [admin, ids_box, *filters], outputs, api_name="merge")
            aliases_button.click(set_aliases, [admin, ids_box, aliases_box, *filters], outputs,
                                 api_name="set_aliases")
            show_history.click(history, [admin, ids_box], edit_history, api_name="history")
            with gr.Accordion("Export / import edits (JSON)", open=False):
                with gr.Row():
                    export_button = gr.Button("Export all edits")
                    exported = gr.File(label="Export file", interactive=False)
                with gr.Row():
                    upload = gr.File(label="File to import", type="binary",
                                     file_types=[".json"])
                    import_button = gr.Button("Import")
            export_button.click(export_file, admin, exported, api_name="export_edits")
            import_button.click(import_file, [admin, upload, *filters], outputs,
                                api_name="import_edits")
            gr.Markdown("### Promote into the model's weights")
            gr.Markdown("Ready to promote (active, asked about often, no conflict):")
            suggestions = gr.Dataframe(headers=SUGGEST_COLUMNS, interactive=False, wrap=True)
            with gr.Row():
                promote_ids = gr.Textbox(label="Edit ids to promote", placeholder="3, 7",
                                         scale=3, elem_id="promote-ids")
                method = gr.Dropdown(METHOD_CHOICES, value="rome", label="Method", scale=1,
                                     elem_id="promote-method")
                promote_button = gr.Button("Promote", variant="primary", scale=1,
                                           elem_id="promote")
            promotion_result = gr.Markdown(elem_id="promotion-result")
            gr.Markdown("#### Weight edits (applied in order at every start)")
            weights = gr.Dataframe(headers=WEIGHT_COLUMNS, interactive=False, wrap=True,
                                   elem_id="weights-table")
            live_weights = gr.Markdown()
            chart = gr.LinePlot(x="promotion", y="value", color="metric", y_lim=[0, 1.05],
                                label="Reliability and locality across promotions",
                                height=260)
            with gr.Row():
                weight_id = gr.Number(label="Weight edit id", precision=0, elem_id="weight-id")
                rollback_button = gr.Button("Roll back", elem_id="rollback")
                trace_id = gr.Number(label="Edit id to trace", precision=0)
                trace_button = gr.Button("Causal trace")
            heatmap = gr.Image(label="Causal trace (where the model recalls the fact)",
                               type="filepath")
            promote_button.click(promote, [admin, promote_ids, method],
                                 [promotion_result, weights, suggestions], api_name="promote"
                                 ).then(promotion_chart, admin, chart, api_name=False
                                        ).then(weights_state, admin, live_weights,
                                               api_name=False)
            rollback_button.click(rollback, [admin, weight_id],
                                  [promotion_result, weights, suggestions],
                                  api_name="rollback"
                                  ).then(promotion_chart, admin, chart, api_name=False
                                         ).then(weights_state, admin, live_weights,
                                                api_name=False)
            trace_button.click(trace_edit, [admin, trace_id], heatmap, api_name="trace")
            refresh.click(weight_rows, admin, weights, api_name="weight_edits")
            refresh.click(suggestion_rows, admin, suggestions, api_name="suggestions")
            demo.load(weight_rows, admin, weights, api_name=False)
            demo.load(promotion_chart, admin, chart, api_name=False)
            refresh.click(promotion_chart, admin, chart, api_name=False)
            refresh.click(weights_state, admin, live_weights, api_name="weights_state")
            demo.load(suggestion_rows, admin, suggestions, api_name=False)
            unlock_button.click(unlock, password, [admin, unlock_result], api_name="unlock")
    return demo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Amend: a chat assistant whose facts you "
                                                 "can correct (local Gradio app).")
    parser.add_argument("--model", type=Path, default=None,
                        help="a Hugging Face causal-LM folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"where edits and models are kept (default: {default_data_dir()}, "
                             "or $AMEND_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 is fastest on 2-core machines)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="reply length limit (default: the model's chat config)")
    parser.add_argument("--shared", action="store_true",
                        help="shared mode even on 127.0.0.1 (on by itself for any other host): "
                             "admin password required, chat corrections wait for approval")
    parser.add_argument("--promotion-config", type=Path, default=None,
                        help="the promotion guard's thresholds as JSON (default: "
                             "configs/promotion.json)")
    parser.add_argument("--set-admin-password", action="store_true",
                        help="ask for the admin password, store its hash in the data dir, exit")
    return parser


def settings_from(args: argparse.Namespace) -> AppSettings:
    return AppSettings(data_dir=(args.data_dir or default_data_dir()).expanduser(),
                       model_path=args.model, threads=max(1, args.threads), host=args.host,
                       port=args.port, max_new_tokens=args.max_new_tokens,
                       shared=is_shared(args.host, args.shared),
                       promotion_config=args.promotion_config)


def parse_args(argv: list[str] | None = None) -> AppSettings:
    return settings_from(_parser().parse_args(argv))


def set_password_interactively(data_dir: Path) -> int:
    import getpass

    first = getpass.getpass("New admin password: ")
    if first != getpass.getpass("Repeat it: "):
        print("error: the two entries differ; nothing changed", file=sys.stderr)
        return 2
    try:
        path = write_password(data_dir, first)
    except AmendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Stored the admin password's hash in {path}")
    return 0


def build_app_in_loader(settings: AppSettings, progress):
    """The app with its weight edits (editing.startup.build_app), imported here, in the loader
    thread, so torch and transformers load after the page is served."""
    from editing.startup import build_app

    return build_app(settings, progress)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    settings = settings_from(args)
    if args.set_admin_password:
        return set_password_interactively(settings.data_dir)
    try:
        check_model_path(settings.model_path)
        access = admin_access(settings.data_dir, settings.shared)
    except AmendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app phones no one
    runtime = Runtime(settings, build=build_app_in_loader, started_at=PROCESS_STARTED)
    loader = runtime.start_in_background()
    demo = build_ui(runtime, access)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=settings.host, server_port=settings.port, prevent_thread_lock=True,
                ssr_mode=False, quiet=True)
    log.info("Page served at http://%s:%d (%.1f s after start)", settings.host, settings.port,
             time.perf_counter() - PROCESS_STARTED)
    loader.join()
    if runtime.error:
        log.error("Start-up failed: %s (the page stays up to show it)", runtime.error)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
