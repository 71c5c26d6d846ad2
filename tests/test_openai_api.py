"""The OpenAI-compatible API (amend_ui/openai_api.py).

Fast: request checks, delta framing and the HTTP shapes over a fake assistant, and the routes
mounted on a real Gradio server next to the page, driven by the official `openai` client.
Real (e2e): `python ui.py` started once for the module, driven by the `openai` client: chat,
streaming, a correction then a paraphrase answered from memory, an unrelated question left to
the base model, errors as the client's typed exceptions.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
from openai import OpenAI
from starlette.applications import Starlette
from starlette.testclient import TestClient

from amend_ui.openai_api import (
    DEFAULT_MODEL_ID,
    MAX_TOKENS_CAP,
    APIError,
    ChatAPI,
    DeltaFramer,
    parse_request,
    reply_content,
)
from assistant.router import ReplyChunk, Trace
from assistant.runtime import Runtime
from config import AppSettings

MODEL = DEFAULT_MODEL_ID
ASK = [{"role": "user", "content": "Where is the Eiffel Tower?"}]


# -- pure parts ---------------------------------------------------------------------------
def test_default_model_id_is_the_default_models_folder():
    from assistant.llm import DEFAULT_FOLDER

    assert DEFAULT_MODEL_ID == DEFAULT_FOLDER


def test_a_request_becomes_history_message_and_session():
    req = parse_request({"model": MODEL, "user": "ann", "max_tokens": 10_000,
                         "temperature": 0.7, "top_p": 0.9, "n": 1, "stop": None,
                         "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Where is it?"},
                                      {"role": "assistant", "content": "In Paris."},
                                      {"role": "user", "content": [
                                          {"type": "text", "text": "No, it's "},
                                          {"type": "text", "text": "Rome"}]}]}, [MODEL])
    assert req.history == [{"role": "user", "content": "Where is it?"},
                           {"role": "assistant", "content": "In Paris."}]  # system left out
    assert req.message == "No, it's Rome" and req.session == "api:ann"
    assert req.max_tokens == MAX_TOKENS_CAP and not req.stream
    plain = parse_request({"model": MODEL, "messages": ASK, "max_completion_tokens": 7,
                           "stream": True, "stream_options": {"include_usage": True}}, [MODEL])
    assert plain.session == "api" and plain.max_tokens == 7
    assert plain.stream and plain.include_usage


@pytest.mark.parametrize("body, status, param", [
    ([], 400, None),
    ({"messages": ASK}, 400, "model"),
    ({"model": MODEL}, 400, "messages"),
    ({"model": MODEL, "messages": []}, 400, "messages"),
    ({"model": MODEL, "messages": ["hi"]}, 400, "messages[0]"),
    ({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, 400,
     "messages[0].role"),
    ({"model": MODEL, "messages": [*ASK, {"role": "assistant", "content": "Paris"}]}, 400,
     "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "  "}]}, 400, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "messages[0].content[0]"),
    ({"model": MODEL, "messages": [{"role": "tool", "content": "1"}, *ASK]}, 400,
     "messages[0].role"),
    ({"model": MODEL, "messages": ASK, "n": 2}, 400, "n"),
    ({"model": MODEL, "messages": ASK, "tools": [{"type": "function"}]}, 400, "tools"),
    ({"model": MODEL, "messages": ASK, "stop": ["\n"]}, 400, "stop"),
    ({"model": MODEL, "messages": ASK, "temperature": 3}, 400, "temperature"),
    ({"model": MODEL, "messages": ASK, "max_tokens": 0}, 400, "max_tokens"),
    ({"model": MODEL, "messages": ASK, "stream": "yes"}, 400, "stream"),
    ({"model": MODEL, "messages": ASK, "stream_options": {"include_usage": True}}, 400,
     "stream_options"),
    ({"model": "gpt-4o", "messages": ASK}, 404, "model"),
])
def test_bad_requests_say_what_is_wrong(body, status, param):
    with pytest.raises(APIError) as info:
        parse_request(body, [MODEL])
    assert (info.value.status, info.value.param) == (status, param)
    error = info.value.body()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if status == 404:
        assert error["code"] == "model_not_found" and MODEL in error["message"]


def test_deltas_hold_back_what_the_next_token_may_change():
    framer = DeltaFramer()
    # a character split over two tokens, and a space that the next token's clean-up removes
    steps = ["Ca", "Caf\ufffd", "Café ", "Café.", "Café. It", "Café. It is"]
    deltas = [framer.feed(text) for text in steps]
    deltas.append(framer.feed("Café. It is here ", final=True))
    assert deltas == ["Ca", "f", "é", ".", " It", " is", " here "]
    assert reply_content("_(Note: too long.)_\n\nRome.", "too long") == "Rome."
    assert reply_content("Rome.", None) == "Rome."


# -- HTTP over a fake assistant -----------------------------------------------------------
class FakeAssistant:
    """Replies word by word like `Assistant.reply`; the last chunk carries the trace."""

    def __init__(self, words: list[str], trace: Trace, delay: float = 0.0) -> None:
        self.words = words
        self.trace = trace
        self.delay = delay  # seconds per word
        self.calls: list[dict] = []
        self.active = self.most_active = 0  # replies being generated now, and at most
        self.stopped_early = 0
        tokens = SimpleNamespace(input_ids=[1, 2, 3])
        self.llm = SimpleNamespace(config=SimpleNamespace(max_new_tokens=64),
                                   encode_chat=lambda messages, max_new_tokens=None: ([0] * 9,
                                                                                      False),
                                   tokenizer=lambda text, add_special_tokens=False: tokens)

    def reply(self, history, message, session="local", max_new_tokens=None):
        self.calls.append({"history": history, "message": message, "session": session,
                           "max_new_tokens": max_new_tokens})
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        text = ""
        try:
            for word in self.words:
                time.sleep(self.delay)
                text += word
                yield ReplyChunk(text)
            yield ReplyChunk(text, self.trace)
        except GeneratorExit:
            self.stopped_early += 1
            raise
        finally:
            self.active -= 1


def fake_runtime(tmp_path: Path, assistant: FakeAssistant | None) -> Runtime:
    runtime = Runtime(AppSettings(data_dir=tmp_path))
    if assistant is not None:  # else: still loading
        runtime.assistant = assistant
        runtime._ready.set()
    return runtime


def http(runtime: Runtime) -> TestClient:
    return TestClient(Starlette(routes=ChatAPI(runtime).routes()))


def events(response: httpx.Response) -> list:
    lines = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_completion_and_stream_shapes(tmp_path):
    trace = Trace(route="memory", edit_ids=[3], score=0.912345, new_tokens=3)
    fake = FakeAssistant(["Rome.", " It is", " in Italy."], trace)
    client = http(fake_runtime(tmp_path, fake))
    body = {"model": MODEL, "messages": ASK, "max_tokens": 3, "user": "bo"}
    done = client.post("/v1/chat/completions", json=body).json()
    assert done["object"] == "chat.completion" and done["model"] == MODEL
    choice = done["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Rome. It is in Italy.",
                                 "refusal": None}
    assert choice["finish_reason"] == "length"  # 3 new tokens of at most 3
    assert done["amend"] == {"route": "memory", "edit_ids": [3], "score": 0.9123,
                             "notice": None, "session": "api:bo"}
    assert done["usage"] == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    assert fake.calls[-1] == {"history": [], "message": ASK[0]["content"],
                              "session": "api:bo", "max_new_tokens": 3}

    response = client.post("/v1/chat/completions", json={
        **body, "max_tokens": None, "stream": True, "stream_options": {"include_usage": True}})
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = events(response)
    assert chunks[-1] == "[DONE]"
    usage, last, *_ = reversed(chunks[:-1])
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 12
    assert last["choices"][0]["finish_reason"] == "stop" and last["amend"]["route"] == "memory"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-3]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d["content"] for d in deltas) == choice["message"]["content"]
    assert {c["object"] for c in chunks[:-1]} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks[:-1]}) == 1


def test_http_errors_in_openais_shape(tmp_path):
    client = http(fake_runtime(tmp_path, None))  # still loading
    bad = client.post("/v1/chat/completions", content=b"{not json",
                      headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    loading = client.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK})
    assert loading.status_code == 503 and loading.headers["retry-after"]
    assert loading.json()["error"]["code"] == "model_not_ready"
    assert "Starting" in loading.json()["error"]["message"]
    assert client.get("/v1/models").json()["data"][0]["id"] == MODEL  # listed while loading
    assert client.get(f"/v1/models/{MODEL}").json()["id"] == MODEL
    assert client.get("/v1/models/other").status_code == 404
    assert client.get("/v1/chat/completions").status_code == 405
    unknown = client.post("/v1/embeddings", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"


def test_shared_mode_keeps_an_api_correction_to_its_user(tiny_llm, embedder, tmp_path):
    """The real Assistant (tiny model, real embedder and store) behind the API: in shared mode
    a correction sent with `user` serves that user's session only, as in the Chat tab."""
    from assistant.memory import EditMemory
    from assistant.router import Assistant
    from config import router_config
    from store.db import Store

    store = Store(tmp_path / "amend.db")
    assistant = Assistant(tiny_llm, embedder, store,
                          EditMemory(store, embedder, tmp_path / "edits.faiss"), router_config())
    assistant.shared = True
    client = http(fake_runtime(tmp_path, assistant))
    try:
        def ask(messages: list, user: str | None = None) -> dict:
            body = {"model": MODEL, "messages": messages, "max_tokens": 4}
            return client.post("/v1/chat/completions",
                               json={**body, **({"user": user} if user else {})}).json()

        stored = ask([*ASK, {"role": "assistant", "content": "The Eiffel Tower is in Paris."},
                      {"role": "user", "content": "No, it's Rome"}], user="ann")
        assert stored["amend"]["route"] == "correction"
        edit = store.get_edit(stored["amend"]["edit_ids"][0])
        assert (edit.status, edit.session, edit.target_new) == ("pending", "api:ann", "Rome")
        question = [{"role": "user", "content": "Which city is the Eiffel Tower in?"}]
        mine = ask(question, user="ann")["amend"]
        assert (mine["route"], mine["edit_ids"], mine["session"]) == ("memory", [edit.id],
                                                                      "api:ann")
        assert ask(question, user="bob")["amend"]["route"] == "base"
        assert ask(question)["amend"]["route"] == "base"  # the shared session "api"
    finally:
        store.close()


# -- mounted on a real Gradio server (no model) -------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_routes_mounted_beside_the_page(tmp_path):
    from gradio_client import Client

    from amend_ui.page import build_ui

    trace = Trace(route="base", new_tokens=2)
    fake = FakeAssistant(["Paris", " indeed."], trace, delay=0.2)
    runtime = fake_runtime(tmp_path, fake)
    demo = build_ui(runtime)
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                ssr_mode=False, quiet=True, app_kwargs={"routes": ChatAPI(runtime).routes()})
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                        max_retries=0)
        assert [m.id for m in client.models.list()] == [MODEL]
        replies: list = []
        asking = [threading.Thread(target=lambda: replies.append(
            client.chat.completions.create(model=MODEL, messages=ASK))) for _ in range(2)]
        for thread in asking:
            thread.start()
        time.sleep(0.1)
        assert client.models.list().data  # the server answers while replies generate...
        assert any(thread.is_alive() for thread in asking)
        for thread in asking:
            thread.join()
        assert fake.most_active == 1  # ...and API replies generate one at a time
        assert [r.choices[0].message.content for r in replies] == ["Paris indeed."] * 2
        assert replies[0].model_extra["amend"]["route"] == "base"

        streamed = list(client.chat.completions.create(model=MODEL, messages=ASK, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == "Paris indeed."
        assert streamed[-1].model_extra["amend"]["route"] == "base"
        with client.chat.completions.create(model=MODEL, messages=ASK, stream=True) as stream:
            next(iter(stream))  # a client that goes away mid-reply stops its generation
        deadline = time.monotonic() + 5
        while not fake.stopped_early and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.stopped_early == 1
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="gpt-4o", messages=ASK)
        assert info.value.code == "model_not_found"
        # the page and its HTTP API are still there
        assert "Amend" in httpx.get(f"http://127.0.0.1:{port}/").text
        status = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/status")
        assert "Status" in status
    finally:
        demo.close()


# -- the real app -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_app(model_cache, tmp_path_factory):
    """`python ui.py` with the real models, once for the module's real tests."""
    from tests.conftest import data_dir_with_model
    from tests.test_e2e import App

    root = tmp_path_factory.mktemp("openai-app")
    app = App(data_dir_with_model(model_cache, root / "data"), root / "app.log")
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def api(real_app) -> OpenAI:
    return OpenAI(base_url=f"http://127.0.0.1:{real_app.port}/v1", api_key="unused",
                  max_retries=0, timeout=120)


@pytest.mark.e2e
@pytest.mark.realmodel
def test_real_chat_and_stream_agree(api):
    question = [{"role": "user", "content": "What is the capital of Japan?"}]
    done = api.chat.completions.create(model=MODEL, messages=question, max_tokens=12)
    text = done.choices[0].message.content
    assert text.strip() and done.model_extra["amend"]["route"] == "base"
    assert done.usage.completion_tokens > 0 and done.usage.prompt_tokens > 0
    stream = api.chat.completions.create(model=MODEL, messages=question, max_tokens=12,
                                         stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == done.choices[0].finish_reason
    assert chunks[-1].model_extra["amend"]["route"] == "base"


@pytest.mark.e2e
@pytest.mark.realmodel
def test_real_correction_then_paraphrase_from_memory(api):
    corrected = api.chat.completions.create(model=MODEL, messages=[
        {"role": "user", "content": "Where is the Eiffel Tower?"},
        {"role": "assistant", "content": "The Eiffel Tower is in Paris, France."},
        {"role": "user", "content": "No, it's Rome"}])
    amend = corrected.model_extra["amend"]
    assert amend["route"] == "correction" and amend["edit_ids"], corrected
    assert "Rome" in corrected.choices[0].message.content
    paraphrase = api.chat.completions.create(model=MODEL, max_tokens=8, messages=[
        {"role": "user", "content": "Which city is the Eiffel Tower in?"}])
    assert paraphrase.model_extra["amend"]["route"] == "memory"
    assert paraphrase.model_extra["amend"]["edit_ids"][0] == amend["edit_ids"][0]
    assert "Rome" in paraphrase.choices[0].message.content
    unrelated = api.chat.completions.create(model=MODEL, max_tokens=4, messages=[
        {"role": "user", "content": "Who wrote Hamlet?"}])
    assert unrelated.model_extra["amend"]["route"] == "base"


@pytest.mark.e2e
@pytest.mark.realmodel
def test_real_errors_are_typed(api, real_app):
    with pytest.raises(openai.NotFoundError) as info:
        api.chat.completions.create(model="gpt-4o", messages=ASK)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model=MODEL, messages=[])
    assert info.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model=MODEL, messages=ASK, n=2)
    raw = httpx.post(f"http://127.0.0.1:{real_app.port}/v1/chat/completions",
                     content=b"{oops", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param",
                                                                   "code"}
