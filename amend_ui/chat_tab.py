"""The Chat tab: the conversation, and a form that stores a correction without chatting.

Its own module so the part every user sees can be read apart from the admin's tools; the
element ids are what tests/test_browser.py clicks, and the api names what gradio_client calls.
"""
from __future__ import annotations

import gradio as gr

from amend_ui.handlers import ChatHandlers


def build_chat_tab(handlers: ChatHandlers) -> None:
    """Lay out the Chat tab inside the current Blocks; `/chat` and `/correct` are its API."""
    with gr.Tab("Chat"):
        chatbot = gr.Chatbot(label="Chat", height=420, elem_id="chatbot")
        trace = gr.Markdown(elem_id="chat-trace")
        with gr.Row():
            box = gr.Textbox(placeholder="Ask something, or correct me: \"No, it's Rome\"",
                             show_label=False, scale=5, max_lines=8, elem_id="chat-input")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        max_tokens = gr.Slider(16, 512, value=200, step=8, label="Max new tokens")
        with gr.Accordion("Correct a fact", open=False):
            subject = gr.Textbox(label="Subject", placeholder="Eiffel Tower")
            question = gr.Textbox(label="Question or statement (must name the subject)",
                                  placeholder="Which city is the Eiffel Tower in?")
            answer = gr.Textbox(label="Right answer", placeholder="Rome")
            save = gr.Button("Save correction")
            saved = gr.Markdown()
        turn = [box, chatbot, max_tokens], [chatbot, box, trace]
        send.click(handlers.chat, *turn, api_name="chat")
        box.submit(handlers.chat, *turn, api_name=False)
        save.click(handlers.correct, [subject, question, answer], saved, api_name="correct")
