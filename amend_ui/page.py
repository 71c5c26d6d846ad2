"""The whole page: title, the status line that says how far loading got, and the two tabs.

Apart from `app` because it imports Gradio, which `app` puts off until the models have
started loading.
"""
from __future__ import annotations

import gradio as gr

from amend_ui.admin_tab import build_admin_tab
from amend_ui.chat_tab import build_chat_tab
from amend_ui.handlers import ChatHandlers, ReviewHandlers, WeightHandlers
from assistant.access import AdminAccess
from assistant.runtime import Runtime


def build_ui(runtime: Runtime, access: AdminAccess | None = None) -> gr.Blocks:
    """The page as a gr.Blocks; every handler goes through `runtime`, and the Admin tab's
    through `access` too (open when none is given)."""
    access = access or AdminAccess(shared=False)
    chat = ChatHandlers(runtime)
    with gr.Blocks(title="Amend", analytics_enabled=False) as demo:
        gr.Markdown("# Amend — a chat assistant whose facts you can correct")
        status = gr.Markdown(chat.status_text())
        timer = gr.Timer(1.0)
        timer.tick(chat.status_text, None, status, api_name=False, show_progress="hidden")
        gr.Button("status", visible=False).click(chat.status_text, None, status,
                                                 api_name="status")
        build_chat_tab(chat)
        build_admin_tab(demo, ReviewHandlers(runtime, access), WeightHandlers(runtime),
                        access.open)
    return demo
