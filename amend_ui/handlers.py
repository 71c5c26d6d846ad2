"""The functions the page's events call: they translate between widgets and the services in
assistant/ and editing/, and turn AmendError into gr.Error here and nowhere else.

Kept apart from the layout so the tabs read as layout and wiring only. Handlers are methods of
small frozen dataclasses that hold the `Runtime` (and, for review, the admin access rule);
Gradio reads their signatures, so the annotations of every method it calls must resolve at run
time: `gr.Request` is how Gradio knows to pass the request, `gr.Progress()` defaults how it
knows to pass a progress tracker. Admin handlers take the session's unlocked flag first (a
gr.State, so not part of the HTTP API's inputs).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from amend_ui.charts import promotion_figure
from assistant.access import AdminAccess
from assistant.runtime import Runtime
from errors import AmendError
from store.transfer import export_json

if TYPE_CHECKING:
    from assistant.router import Assistant
    from store.db import Edit

EDIT_COLUMNS = ["#", "Status", "Subject", "Question", "New answer", "Old answer", "Aliases",
                "Asked", "Source", "Created"]
AUDIT_COLUMNS = ["When", "Who", "Action", "Edit", "Detail"]
# (key in WeightEdits.table() rows, header); positions 0-2 (id, method, status) are what
# gradio_client callers read
WEIGHT_FIELDS = [("id", "#"), ("method", "Method"), ("status", "Status"), ("edits", "Edits"),
                 ("reliability", "Reliability"), ("generalization", "Paraphrases"),
                 ("locality", "Locality"), ("portability", "Portability"),
                 ("chat_reliability", "Chat reliability"),
                 ("chat_generalization", "Chat paraphrases"),
                 ("chat_locality", "Chat locality"), ("cost", "Cost")]
# the scores a person reads in a promotion's message and audit entry, in this order and words
SCORE_WORDS = {"reliability": "reliability", "generalization": "generalization",
               "locality": "locality", "total_locality": "locality vs the base model",
               "portability": "portability", "chat_reliability": "chat reliability",
               "chat_generalization": "chat generalization", "chat_locality": "chat locality",
               "carried": "carried by the weights in chat", "seconds": "seconds"}
WEIGHT_COLUMNS = [header for _, header in WEIGHT_FIELDS]
SUGGEST_COLUMNS = ["#", "Subject", "Question", "New answer", "Ready", "Why"]
DETAIL_WORDS = {"target_new": "new answer", "by": "replaced by #", "edits": "edits",
                "weight_edit": "weight edit #", "note": "note", "source": "source",
                "aliases": "aliases", "reason": "reason", "scores": "scores"}
LOAD_TIMEOUT_S = 900
LOCKED = "Locked: enter the admin password above and press Unlock."


def status_label(edit: Edit) -> str:
    """The status an admin reads: a promoted edit the weights do not answer in chat says that
    the memory route still serves it."""
    if edit.status == "promoted" and edit.backstop:
        return "promoted (weights miss it; memory answers)"
    if edit.status == "promoted":
        return "promoted (weights answer it)"
    return edit.status


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


def plain(value: Any) -> str:
    """A value as a person reads it: lists joined, scores to three decimals, no JSON."""
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value) or "–"
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')} {plain(v)}" for k, v in value.items())
    return str(value)


def scores_text(scores: dict) -> str:
    """A promotion's main scores in words ("reliability 1, chat locality 0.333, ...")."""
    return ", ".join(f"{words} {plain(scores[key])}" for key, words in SCORE_WORDS.items()
                     if scores.get(key) is not None)


def cost(row: dict) -> str:
    """A promotion's time and peak memory in one cell ("33 s, 2.2 GB")."""
    parts = []
    if row.get("seconds") is not None:
        parts.append(f"{row['seconds']:.0f} s")
    if row.get("peak_rss_mb") is not None:
        parts.append(f"{row['peak_rss_mb'] / 1024:.1f} GB")
    return ", ".join(parts) or "–"


def audit_detail(detail: str | None) -> str:
    """An audit entry's JSON detail as one readable line ("new answer: Rome, source: chat")."""
    try:
        fields = json.loads(detail or "{}")
    except ValueError:
        return detail or ""
    if not isinstance(fields, dict):
        return plain(fields)
    parts = []
    for key, value in fields.items():
        if value in (None, "", [], {}):
            continue
        if key == "scores" and isinstance(value, dict):
            value = scores_text(value)
        elif key == "edits" and isinstance(value, list):
            value = ", ".join(f"#{e}" for e in value)
        label = DETAIL_WORDS.get(key, key.replace("_", " "))
        parts.append(f"{label}{plain(value)}" if label.endswith("#") else
                     f"{label}: {plain(value)}")
    return ", ".join(parts)


def audit_edit(row: dict) -> str:
    """The edit(s) an audit entry is about; a promotion names its edits in the detail."""
    if row.get("edit_id") is not None:
        return f"#{row['edit_id']}"
    try:
        edits = json.loads(row.get("detail") or "{}").get("edits") or []
    except (ValueError, AttributeError):
        edits = []
    return ", ".join(f"#{e}" for e in edits)


def first_id(text: str | None) -> int | None:
    """The first id of a selection (for the boxes that take one edit), or None."""
    ids = loose_ids(text)
    return ids[0] if ids else None


def loose_ids(text: str | None) -> list[int]:
    """The ids in a selection box, skipping anything that is not one (for the selection,
    which must never fail; the actions use `edit_ids`, which says what is wrong)."""
    return list(dict.fromkeys(int(p) for p in (text or "").replace(",", " ").split()
                              if p.isdigit()))


def ready(runtime: Runtime) -> Assistant:
    """The loaded Assistant; waits for loading to finish, and says on the page why it failed."""
    try:
        return runtime.wait_ready(LOAD_TIMEOUT_S)
    except AmendError as exc:
        raise gr.Error(str(exc)) from exc


def require_admin(admin_ok: bool) -> None:
    if not admin_ok:
        raise gr.Error("This is an admin action: enter the admin password in the Admin "
                       "tab and press Unlock (the app runs in shared mode).")


def edit_ids(text: str, what: str = "the edits") -> list[int]:
    try:
        ids = [int(part) for part in (text or "").replace(",", " ").split()]
    except ValueError:
        raise gr.Error("Edit ids are whole numbers separated by commas or spaces, "
                       "e.g. 3, 7, 12.") from None
    if not ids:
        raise gr.Error(f"Enter the ids of {what} (see the edits table).")
    return ids


def one_id(value: float | None, message: str) -> int:
    """The positive id in a number box, or `message` as the error."""
    if value is None or int(value) <= 0:
        raise gr.Error(message)
    return int(value)


@dataclass(frozen=True)
class ChatHandlers:
    """The status line and the Chat tab: open to everyone, in every mode."""

    runtime: Runtime

    def status_text(self) -> str:
        return f"**Status:** {self.runtime.status}"

    def chat(self, message: str, history: list, max_new_tokens: float,
             request: gr.Request = None) -> Iterator[tuple[list, str, str]]:
        history = list(history or [])
        assistant = ready(self.runtime)
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

    def correct(self, subject: str, question: str, answer: str,
                request: gr.Request = None) -> str:
        assistant = ready(self.runtime)
        session = getattr(request, "session_hash", None) or "api"
        text, _ = assistant.correct_from_form(subject or "", question or "", answer or "",
                                              session=session)
        return text


@dataclass(frozen=True)
class ReviewHandlers:
    """The Admin tab's upper half: unlock, the edits table and what an admin does to edits,
    the audit log, export and import. Actions return their message followed by the refreshed
    table (`list_edits` of the filters passed after the action's own inputs) and audit log."""

    runtime: Runtime
    access: AdminAccess

    def unlock(self, password: str) -> tuple[bool, str]:
        if self.access.check(password or ""):
            return True, "Unlocked: admin actions are enabled for this browser session."
        return False, "Wrong admin password."

    def list_edits(self, admin_ok: bool, search: str, status: str, source: str = "all",
                   min_hits: float = 0, max_age_days: float = 0, conflicts: bool = False,
                   page: float = 1, page_size: float = 50) -> tuple[list, str]:
        """The filtered page of the edits table, and a line saying where it is."""
        if not admin_ok:
            return [], LOCKED
        assistant = ready(self.runtime)
        size = int(page_size or 50)
        edits, total = assistant.store.query_edits(
            status=None if status in (None, "", "all") else status,
            source=None if source in (None, "", "all") else source,
            min_hits=int(min_hits or 0),
            max_age_days=float(max_age_days) if max_age_days else None,
            search=(search or "").strip() or None,
            conflicts_only=bool(conflicts), page=int(page or 1), page_size=size)
        pages = max(1, -(-total // size))
        rows = [[e.id, status_label(e), e.subject, e.prompt, e.target_new, e.target_old or "",
                 ", ".join(e.aliases), e.hits, e.source, when(e.created_at)] for e in edits]
        return rows, f"{total} edit(s); page {min(int(page or 1), pages)} of {pages}"

    def audit_rows(self, admin_ok: bool) -> list:
        if not admin_ok:
            return []
        assistant = ready(self.runtime)
        return [[when(r["created_at"]), r["actor"], r["action"], audit_edit(r),
                 audit_detail(r["detail"])] for r in assistant.store.audit_log(200)]

    def _refreshed(self, message: str, filters: tuple) -> tuple:
        """An action's outputs: its message, the edits table again, the audit log again."""
        return message, *self.list_edits(True, *filters), self.audit_rows(True)

    def set_status(self, admin_ok: bool, ids_text: str, status: str, *filters: Any) -> tuple:
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        lines = assistant.review.bulk_status(edit_ids(ids_text), status)
        return self._refreshed("  \n".join(lines), filters)

    def _on_one_edit(self, admin_ok: bool, ids_text: str, what: str,
                     action: Callable[[Assistant, int], Any]) -> tuple[int, Any]:
        """Run `action(assistant, edit_id)` on the one edit named, as an admin; AmendError
        becomes a message on the page."""
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        ids = edit_ids(ids_text, f"the edit to {what}")
        if len(ids) != 1:
            raise gr.Error(f"{what[:1].upper()}{what[1:]} one edit at a time.")
        try:
            return ids[0], action(assistant, ids[0])
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc

    def change_target(self, admin_ok: bool, ids_text: str, target: str, *filters: Any) -> tuple:
        old, edit = self._on_one_edit(admin_ok, ids_text, "change",
                                      lambda a, i: a.review.change_target(i, target or ""))
        return self._refreshed(f"Edit #{old} is replaced by #{edit.id}: {edit.statement}",
                               filters)

    def set_aliases(self, admin_ok: bool, ids_text: str, aliases_text: str,
                    *filters: Any) -> tuple:
        """Replace one edit's aliases with the comma-separated list (empty clears them)."""
        names = [a.strip() for a in (aliases_text or "").split(",") if a.strip()]
        _, edit = self._on_one_edit(admin_ok, ids_text, "give aliases to",
                                    lambda a, i: a.review.set_aliases(i, names))
        said = ", ".join(edit.aliases) or "none"
        return self._refreshed(f"Edit #{edit.id} ({edit.subject}) now also answers to: {said}",
                               filters)

    def merge(self, admin_ok: bool, ids_text: str, *filters: Any) -> tuple:
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        ids = edit_ids(ids_text, "the edits to merge (the first is kept)")
        try:
            kept = assistant.review.merge(ids[0], ids[1:])
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        message = (f"Kept #{kept.id} ({kept.statement}); "
                   f"{', '.join(f'#{i}' for i in ids[1:])} superseded by it.")
        return self._refreshed(message, filters)

    def history(self, admin_ok: bool, ids_text: str) -> str:
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        ids = edit_ids(ids_text, "the edit to show")
        try:
            info = assistant.store.edit_history(ids[0])
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        edit = info["edit"]
        turns = info["turns"]
        answered = sum(1 for t in turns if t["route"] != "correction")
        lines = [f"#### Edit #{edit.id}: {edit.statement}",
                 (f"Status **{status_label(edit)}**, source {edit.source}, old answer: "
                  f"{edit.target_old or 'unknown'}. Asked about {edit.hits} time(s) since it "
                  "was stored."), "", "**History**"]
        lines += [f"- {when(a['created_at'])} {a['actor']}: {a['action']}"
                  + (f" ({audit_detail(a['detail'])})" if audit_detail(a["detail"]) else "")
                  for a in info["audit"]]
        lines += ["", f"**Weight edits** ({len(info['weight_edits'])})"]
        lines += [f"- #{w['id']} {w['method']} {w['status']}: {scores_text(w['scores'])}"
                  for w in info["weight_edits"]]
        lines += ["", f"**Chat turns that used it** ({len(turns)}: {len(turns) - answered} "
                      f"correction, {answered} answered from it; newest first)"]
        lines += [f"- {when(t['created_at'])} [{t['route']}] {t['content'][:200]}"
                  for t in turns]
        return "\n".join(lines)

    def selected_history(self, admin_ok: bool, selection: str) -> str:
        """The history of the first selected edit, redrawn after every action, so what it
        says is never older than the tables."""
        ids = loose_ids(selection)
        if not admin_ok or not ids:
            return "_Select an edit in the table to see its history here._"
        try:
            return self.history(admin_ok, str(ids[0]))
        except gr.Error:
            return f"_No edit #{ids[0]}._"

    def select_row(self, selection: str, add: bool, event: gr.SelectData) -> str:
        """A click on a table row selects that edit; shift- or ctrl-click adds it to the
        selection, or takes it out if it is already there."""
        try:
            clicked = int((event.row_value or [None])[0])
        except (TypeError, ValueError):
            return selection
        ids = loose_ids(selection)
        if not add:
            ids = [clicked]
        elif clicked in ids:
            ids.remove(clicked)
        else:
            ids.append(clicked)
        return ", ".join(str(i) for i in ids)

    def export_file(self, admin_ok: bool) -> str:
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        folder = assistant.weights.data_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"edits-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(export_json(assistant.store), encoding="utf-8")
        return str(path)

    def import_file(self, admin_ok: bool, data: bytes | None, *filters: Any) -> tuple:
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        if not data:
            raise gr.Error("Choose an export file (JSON) to import.")
        try:
            report = assistant.review.import_edits(data)
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        return self._refreshed(report.summary(), filters)


MODEL_FORMATS = ["GGUF file (llama.cpp, Ollama)", "Hugging Face folder (transformers, vLLM)"]


def reporter(status: Callable[[str], None], progress: gr.Progress,
             short: bool = False) -> Callable[[str], None]:
    """One step of long work to both places a person looks: the status line and the bar
    (`short`: the status line keeps only the part after the job's name)."""
    def report(message: str) -> None:
        status(message.split(": ", 1)[-1] if short else message)
        progress(None, desc=message)
    return report


@dataclass(frozen=True)
class WeightHandlers:
    """The Admin tab's lower half: promotion into the weights, rollback, causal trace, and
    the tables and chart that show what the weights hold."""

    runtime: Runtime

    def weight_rows(self, admin_ok: bool) -> list:
        if not admin_ok:
            return []
        assistant = ready(self.runtime)
        return [[row["id"] if key == "id" else
                 ", ".join(f"#{e}" for e in row["edits"]) if key == "edits" else
                 row["status"].replace("_", " ") if key == "status" else
                 cost(row) if key == "cost" else
                 plain(row.get(key)) for key, _ in WEIGHT_FIELDS]
                for row in assistant.weights.table()]

    def promotion_chart(self, admin_ok: bool) -> Image.Image:
        """Each promotion's scores as a picture (amend_ui/charts.py); locked, a picture that
        says how to unlock, so the chart never shows a stale or blank frame."""
        if not admin_ok:
            return promotion_figure([], "Locked", "Enter the admin password above and press "
                                    "Unlock to see the promotions' scores.")
        return promotion_figure(ready(self.runtime).weights.table())

    def weights_state(self, admin_ok: bool) -> str:
        if not admin_ok:
            return LOCKED
        return ready(self.runtime).weights.live_state()

    def suggestion_rows(self, admin_ok: bool) -> list:
        if not admin_ok:
            return []
        assistant = ready(self.runtime)
        return [[e.id, e.subject, e.prompt, e.target_new, "yes" if ok else "not yet", why]
                for e, ok, why in assistant.weights.suggestions()]

    def select_weight_row(self, event: gr.SelectData) -> float | None:
        """A click on a weight edit's row puts its id in the rollback box."""
        try:
            return int((event.row_value or [None])[0])
        except (TypeError, ValueError):
            return None

    def promote(self, admin_ok: bool, ids_text: str, method: str,
                progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (see top)
                ) -> tuple[str, list, list]:
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        ids = edit_ids(ids_text, "the edits to promote")
        method = method or "rome"
        what = f"Promoting edit {', '.join(f'#{i}' for i in ids)} with {method}"
        with self.runtime.activity(what, log_steps=False) as status:  # promote logs steps
            try:
                result = assistant.weights.promote(ids, method,
                                                   progress=reporter(status, progress))
            except AmendError as exc:
                raise gr.Error(str(exc)) from exc
        scores = result.scores or {}
        detail = scores_text(scores)
        message = f"**{result.message}**" + (f"  \nScores: {detail}" if detail else "")
        changed = scores.get("chat_locality_changed") or []
        if changed:  # what the user would have seen change, so the admin can judge it
            message += "  \nChat replies that changed:\n" + "\n".join(f"- {c}" for c in changed)
        return message, self.weight_rows(True), self.suggestion_rows(True)

    def rollback(self, admin_ok: bool, weight_edit_id: float) -> tuple[str, list, list]:
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        weight_edit = one_id(weight_edit_id, "Enter the id of a weight edit from the table.")
        try:
            message = assistant.weights.rollback(weight_edit)
        except AmendError as exc:
            raise gr.Error(str(exc)) from exc
        return message, self.weight_rows(True), self.suggestion_rows(True)

    def trace_edit(self, admin_ok: bool, edit_id: float,
                   progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008 (see top)
        require_admin(admin_ok)
        assistant = ready(self.runtime)
        traced = one_id(edit_id, "Enter the id of an edit to trace.")
        # "Causal trace of edit #3: mlp states (2/3)"
        with self.runtime.activity(f"Causal trace of edit #{traced}") as status:
            try:
                edit = assistant.store.get_edit(traced)
                path = assistant.weights.trace_image(edit, reporter(status, progress, True))
            except AmendError as exc:
                raise gr.Error(str(exc)) from exc
        return str(path)

    def export_model(self, admin_ok: bool, kind: str,
                     progress: gr.Progress = gr.Progress(),  # noqa: B008 (see top)
                     ) -> str:
        """Write the live weights (base + committed weight edits) for other tools, into a
        new folder under the data dir's exports/; say where and what it holds."""
        # here, not at the top: the page is built while the loader thread imports transformers,
        # and a second import of it from this thread races that one (ImportError)
        from editing.export import MANIFEST, export_gguf, export_hf

        require_admin(admin_ok)
        assistant = ready(self.runtime)
        gguf = not kind or kind.startswith("GGUF")
        name = f"model-{time.strftime('%Y%m%d-%H%M%S')}-{'gguf' if gguf else 'hf'}"
        out = assistant.weights.data_dir / "exports" / name
        with self.runtime.activity(f"Exporting the model ({'GGUF' if gguf else 'HF'})"
                                   ) as status:
            report = reporter(status, progress)
            try:
                if gguf:
                    path = export_gguf(assistant.llm, assistant.store, assistant.weights, out,
                                       progress=report, template=assistant.llm.gguf_source)
                else:
                    path = export_hf(assistant.llm, assistant.store, assistant.weights, out,
                                     report)
            except AmendError as exc:
                raise gr.Error(str(exc)) from exc
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        held = ", ".join(f"#{e['id']} ({e['method']})" for e in manifest["weight_edits"])
        use = (f"`llama-cli -m {path}`, or Ollama: `FROM {path}`" if gguf else
               f"`AutoModelForCausalLM.from_pretrained(\"{path}\")`, or `vllm serve {path}`")
        return (f"**Exported** the live weights to `{path}`  \n"
                f"Weight edits inside: {held or 'none (the base model)'}; checksum "
                f"{manifest['live_weights_checksum']}; the manifest is `{out / MANIFEST}`.  \n"
                f"Use it with {use}. Corrections still in the memory route are not in the "
                "weights: promote them first to take them along.")
