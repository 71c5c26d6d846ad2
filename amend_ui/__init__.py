"""Amend's Gradio page, split by concern so each part reads on its own.

`app` parses the command line and serves the page (`python ui.py` calls its `main`); `page`
assembles the Blocks from `chat_tab` and `admin_tab`; `handlers` holds the functions those tabs
call, which translate between widgets and the services in assistant/. Only `app` may be
imported before the models start loading: the other modules import Gradio, and importing it is
most of a warm start.
"""
