"""The whole page: title, the status line that says what the app is doing, and the two tabs.

Apart from `app` because it imports Gradio, which `app` puts off until the models have
started loading. `LAUNCH` holds what Gradio 6 takes at launch rather than in Blocks: the
theme, the style sheet and the script in the page's head.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from amend_ui.admin_tab import build_admin_tab
from amend_ui.chat_tab import build_chat_tab
from amend_ui.handlers import ChatHandlers, ReviewHandlers, WeightHandlers
from assistant.access import AdminAccess
from assistant.runtime import Runtime

# The machine's own fonts: a local app fetches no web font, and a half-loaded one drew some
# bold capitals in another face.
SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
                "sans-serif"]
PAGE_CSS = """
/* table headers wrap between words, never inside one */
.amend-table th, .amend-table th * { word-break: normal !important;
  overflow-wrap: normal !important; hyphens: manual !important; }
.amend-table [role=gridcell], .amend-table th { font-size: 13px;
  font-family: var(--font); }
.amend-table th { font-size: 12px; }
#status { position: sticky; top: 0; z-index: 20; background: var(--body-background-fill);
  padding: 4px 0; }
"""
# Remember whether the last click on the page held shift or ctrl, for the edits table's
# multi-select (admin_tab.WITH_MODIFIER reads it).
PAGE_HEAD = """<script>
document.addEventListener("mousedown", (e) => {
  window.amendAddToSelection = e.shiftKey || e.ctrlKey || e.metaKey; }, true);
</script>"""


def launch_options() -> dict[str, Any]:
    """What `demo.launch` needs besides the address: theme, style sheet, head script."""
    return {"theme": gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace",
                                                                     "monospace"]),
            "css": PAGE_CSS, "head": PAGE_HEAD}


def build_ui(runtime: Runtime, access: AdminAccess | None = None) -> gr.Blocks:
    """The page as a gr.Blocks; every handler goes through `runtime`, and the Admin tab's
    through `access` too (open when none is given)."""
    access = access or AdminAccess(shared=False)
    chat = ChatHandlers(runtime)
    with gr.Blocks(title="Amend", analytics_enabled=False) as demo:
        gr.Markdown("# Amend — a chat assistant whose facts you can correct")
        status = gr.Markdown(chat.status_text(), elem_id="status")
        timer = gr.Timer(1.0)
        timer.tick(chat.status_text, None, status, api_name=False, show_progress="hidden")
        gr.Button("status", visible=False).click(chat.status_text, None, status,
                                                 api_name="status")
        build_chat_tab(chat)
        build_admin_tab(demo, ReviewHandlers(runtime, access), WeightHandlers(runtime),
                        access.open)
    return demo
