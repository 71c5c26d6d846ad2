"""An OpenAI-compatible chat API beside the page: `POST /v1/chat/completions` (streamed or
not) and `GET /v1/models`, so any OpenAI client can talk to Amend and correct it.

Why here: it is one more way into the same Assistant the Chat tab uses, in the same process
and on the same port (its routes are handed to the FastAPI app that Gradio's `launch`
creates, see `amend_ui.app`). A request goes through `Assistant.reply` exactly as a tab turn
does: its last user message may be a correction ("No, it's Rome"), which is stored, and any
other question is routed through the edit memory, with the edits its session may see (in
shared mode a chat correction stays pending for the session that made it). The session is
the request's `user` field ("api:<user>"), or "api" when it has none. The route and edits go
back in an extra `amend` field.

Generation is CPU-bound: each API reply runs in a thread of its own (not the server's thread
pool, which Gradio's handlers use) that hands chunks to the event loop, and these threads take
one lock, so API replies generate one at a time while the page and its queue (one chat at a
time) keep running.

Pure parts (`parse_request`, `DeltaFramer`, the response builders) need no model and are what
the fast tests exercise.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from assistant.runtime import Runtime
from errors import AmendError

log = logging.getLogger(__name__)

DEFAULT_SESSION = "api"
# assistant.llm.DEFAULT_FOLDER, written out: importing assistant.llm imports torch, which the
# page must not wait for (tests/test_openai_api.py checks the two agree)
DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct"
MAX_TOKENS_CAP = 512  # the Chat tab's "Max new tokens" slider goes up to this
MAX_USER_CHARS = 256  # a session name is stored with every turn
ROLES = ("system", "developer", "user", "assistant")
# what a client may send that this server cannot do: refused rather than silently ignored
UNSUPPORTED = {"tools": "tools (function calling)", "functions": "functions",
               "audio": "audio output", "prediction": "predicted outputs",
               "web_search_options": "web search"}


class APIError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "5"} if self.status == 503 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat completion request, in the terms `Assistant.reply` takes."""

    model: str
    history: list[dict[str, str]]  # the messages before the last one (user and assistant)
    message: str  # the last user message: a question or a correction
    session: str
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None  # None: the chat config's reply length


def _bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def _text(content: Any, param: str) -> str:
    """A message's content as text: a string, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                raise _bad("Only text content is supported: each content part must be "
                           '{"type": "text", "text": "..."}.', f"{param}[{i}]")
            parts.append(part["text"])
        return "".join(parts)
    raise _bad("A message's content must be a string or a list of text parts.", param)


def _number(body: dict, key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"'{key}' must be a number from {low:g} to {high:g}.", key)


def _max_tokens(body: dict) -> int | None:
    """max_completion_tokens (or the older max_tokens), capped like the Chat tab's slider."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"'{key}' must be a whole number of at least 1.", key)
        return min(value, MAX_TOKENS_CAP)
    return None


def _messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty list of {\"role\", \"content\"} objects.",
                   "messages")
    messages = []
    for i, m in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{param} must be an object with 'role' and 'content'.", param)
        role = m.get("role")
        if role in ("tool", "function") or m.get("tool_calls") or m.get("function_call"):
            raise _bad("Tool and function messages are not supported by this server.",
                       f"{param}.role")
        if role not in ROLES:
            raise _bad(f"{param}.role must be one of {', '.join(ROLES)}.", f"{param}.role")
        if "content" not in m and role != "assistant":
            raise _bad(f"{param} has no 'content'.", f"{param}.content")
        messages.append({"role": role, "content": _text(m.get("content"),
                                                        f"{param}.content")})
    return messages


def parse_request(body: Any, model_ids: list[str]) -> ChatRequest:
    """Check a chat completion request's JSON; raises APIError (400, or 404 for a model this
    server does not serve) saying what is wrong.

    System and developer messages are accepted and left out: the Chat tab has none, and the
    routes bring their own system prompt (the memory route's says which facts are true).
    """
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required (GET /v1/models lists it).", "model")
    messages = _messages(body.get("messages"))
    if messages[-1]["role"] != "user":
        raise _bad("The last message must be the user's (a question, or a correction of "
                   "the previous answer).", "messages")
    if not messages[-1]["content"].strip():
        raise _bad("The last user message is empty: ask a question, or correct the previous "
                   "answer (\"No, it's Rome\").", "messages")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise _bad("'stream_options' is an object, and only allowed with \"stream\": true.",
                   "stream_options")
    n = body.get("n")
    if n is not None and n != 1:
        raise _bad("Only n=1 is supported: replies are greedy, so every choice would be the "
                   "same.", "n")
    for key, what in UNSUPPORTED.items():
        if body.get(key):
            raise _bad(f"This server does not support {what} ('{key}').", key)
    if body.get("logprobs") or body.get("top_logprobs"):
        raise _bad("This server does not return log probabilities.", "logprobs")
    if body.get("stop"):
        raise _bad("Stop sequences are not supported ('stop').", "stop")
    response_format = body.get("response_format")
    if response_format and (not isinstance(response_format, dict)
                            or response_format.get("type") != "text"):
        raise _bad("Only plain text replies are supported ('response_format').",
                   "response_format")
    _number(body, "temperature", 0, 2)  # accepted and ignored: generation is greedy
    _number(body, "top_p", 0, 1)
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise _bad(f"'user' must be a string of at most {MAX_USER_CHARS} characters (it names "
                   "the session).", "user")
    max_tokens = _max_tokens(body)
    if model not in model_ids:
        raise APIError(404, f"The model '{model}' does not exist: this server serves "
                            f"{', '.join(repr(m) for m in model_ids)} (GET /v1/models).",
                       "model", "model_not_found")
    turns = [m for m in messages[:-1] if m["role"] in ("user", "assistant")]
    return ChatRequest(model=model, history=turns, message=messages[-1]["content"],
                       session=f"{DEFAULT_SESSION}:{user}" if user else DEFAULT_SESSION,
                       stream=bool(stream),
                       include_usage=bool((options or {}).get("include_usage")),
                       max_tokens=max_tokens)


class DeltaFramer:
    """Turns the reply so far (cumulative, as `Assistant.reply` yields it) into the text
    deltas OpenAI streams.

    Until the last chunk it holds back trailing whitespace and U+FFFD: decoding a reply token
    by token can end mid-character (a replacement character the next token repairs) or with a
    space the tokenizer's clean-up later removes, and a sent delta cannot be taken back.
    """

    def __init__(self) -> None:
        self.sent = ""

    def feed(self, text: str, final: bool = False) -> str:
        ready = text if final else text.rstrip(" \t\n\r\ufffd")
        if not ready.startswith(self.sent):
            if final:
                log.warning("streamed reply diverged from the final text; the rest is lost")
            return ""
        delta = ready[len(self.sent):]
        self.sent = ready
        return delta


def reply_content(text: str, notice: str | None) -> str:
    """The reply without the Chat tab's note about a cut conversation (that note goes in the
    `amend` field), so streamed deltas add up to the same text as a non-streamed reply."""
    prefix = f"_(Note: {notice}.)_\n\n"
    return text[len(prefix):] if notice and text.startswith(prefix) else text


def amend_field(trace: Any, session: str) -> dict[str, Any]:
    """The extra response field: how the reply was routed (base | memory | correction |
    clarify), the edits it used or stored, the best similarity, any notice, the session."""
    return {"route": trace.route, "edit_ids": list(trace.edit_ids),
            "score": None if trace.score is None else round(float(trace.score), 4),
            "notice": trace.notice, "session": session}


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


@dataclass
class Outcome:
    """A finished reply: its content, why it ended, the route, token counts."""

    content: str
    finish_reason: str
    amend: dict[str, Any]
    usage: dict[str, int] | None


_DONE = object()


class ChatAPI:
    """The /v1 routes over one Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()  # one API reply generates at a time

    def model_ids(self) -> list[str]:
        """The one model served: the --model folder's name, or the default model's."""
        path = self.runtime.settings.model_path
        return [path.expanduser().name if path else DEFAULT_MODEL_ID]

    def routes(self) -> list[BaseRoute]:
        """The routes to serve; anything else under /v1 is a 404 in OpenAI's shape."""
        return [Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model:path}", self.model, methods=["GET"]),
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/v1/{rest:path}", self.unknown,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]

    # -- endpoints ------------------------------------------------------------------------
    def _model_object(self, model_id: str) -> dict[str, Any]:
        created = int(time.time() - (time.perf_counter() - self.runtime.started_at))
        return {"id": model_id, "object": "model", "created": created, "owned_by": "amend"}

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list",
                             "data": [self._model_object(m) for m in self.model_ids()]})

    async def model(self, request: Request) -> Response:
        model_id = request.path_params["model"]
        if model_id not in self.model_ids():
            return APIError(404, f"The model '{model_id}' does not exist.", "model",
                            "model_not_found").response()
        return JSONResponse(self._model_object(model_id))

    async def unknown(self, request: Request) -> Response:
        path = request.url.path
        if path.rstrip("/") in ("/v1/chat/completions", "/v1/models"):
            return APIError(405, f"{request.method} is not allowed on {path}.",
                            code="method_not_allowed").response()
        return APIError(404, f"Unknown API path {path}: this server serves "
                             "POST /v1/chat/completions and GET /v1/models.",
                        code="unknown_url").response()

    async def completions(self, request: Request) -> Response:
        try:
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError as exc:
                raise _bad(f"The request body is not valid JSON: {exc}.") from None
            req = parse_request(body, self.model_ids())
            assistant = self._assistant()
            chunks = self._replies(assistant, req)
            if req.stream:
                first = await anext(chunks)  # routing errors still get an HTTP status
                return StreamingResponse(self._events(req, first, chunks),
                                         media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache",
                                                  "X-Accel-Buffering": "no"})
            outcome = None
            async for item in chunks:
                if isinstance(item, Outcome):
                    outcome = item
            if outcome is None:
                raise AmendError("the assistant ended without a reply")
            return JSONResponse(self._completion(req, outcome))
        except APIError as exc:
            return exc.response()
        except Exception as exc:
            log.exception("chat completion failed")
            return APIError(500, f"The reply failed: {type(exc).__name__}: {exc}",
                            type_="server_error").response()

    def _assistant(self) -> Any:
        """The loaded Assistant, or a 503 saying how far loading got (no waiting)."""
        try:
            return self.runtime.wait_ready(0)
        except AmendError as exc:
            raise APIError(503, f"The models are not ready: {exc}", type_="server_error",
                           code="model_not_ready") from None

    # -- generation -----------------------------------------------------------------------
    async def _replies(self, assistant: Any, req: ChatRequest) -> AsyncIterator[Any]:
        """The reply's text so far (str) after each step, then its Outcome; the Assistant
        runs in a thread of its own, which holds the API lock while it generates (taken and
        released in that thread, so no event loop has to be alive to release it)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()  # the client went away: stop generating

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone (server shutting down)
                stop.set()

        def work() -> None:
            try:
                with self._lock:
                    if not stop.is_set():  # the client may have gone while it waited
                        put(self._run(assistant, req, put, stop))
            except Exception as exc:  # noqa: BLE001 (raised again in the request's task)
                put(exc)
            finally:
                put(_DONE)

        threading.Thread(target=work, name="amend-api-reply", daemon=True).start()
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()

    def _run(self, assistant: Any, req: ChatRequest, put: Any,
             stop: threading.Event) -> Outcome | None:
        """In the worker thread: stream the reply through `put`, return its Outcome."""
        replies = assistant.reply(req.history, req.message, session=req.session,
                                  max_new_tokens=req.max_tokens)
        chunk = None
        try:
            for chunk in replies:
                if chunk.trace is None:
                    put(chunk.text)
                if stop.is_set():
                    return None
        finally:
            replies.close()
        if chunk is None or chunk.trace is None:
            raise AmendError("the assistant ended without a reply")
        trace = chunk.trace
        content = reply_content(chunk.text, trace.notice)
        limit = req.max_tokens or assistant.llm.config.max_new_tokens
        return Outcome(content=content,
                       finish_reason="length" if trace.new_tokens >= limit else "stop",
                       amend=amend_field(trace, req.session),
                       usage=self._usage(assistant, req, content))

    @staticmethod
    def _usage(assistant: Any, req: ChatRequest, content: str) -> dict[str, int] | None:
        """Token counts by the model's tokenizer: the conversation as the base model reads it
        (the memory route's own prompt differs a little) and the reply's text."""
        try:
            llm = assistant.llm
            conversation = [*req.history, {"role": "user", "content": req.message}]
            prompt = len(llm.encode_chat(conversation, max_new_tokens=req.max_tokens)[0])
            completion = len(llm.tokenizer(content, add_special_tokens=False).input_ids)
        except Exception:  # counts are a courtesy; never fail a reply over them
            log.exception("could not count tokens")
            return None
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    # -- responses ------------------------------------------------------------------------
    @staticmethod
    def _head(req: ChatRequest) -> dict[str, Any]:
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": req.model, "system_fingerprint": None}

    def _completion(self, req: ChatRequest, outcome: Outcome) -> dict[str, Any]:
        body = {**self._head(req), "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": outcome.content,
                                                     "refusal": None},
                             "logprobs": None, "finish_reason": outcome.finish_reason}],
                "amend": outcome.amend}
        if outcome.usage is not None:
            body["usage"] = outcome.usage
        return body

    async def _events(self, req: ChatRequest, first: Any,
                      rest: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        """SSE: a role chunk, text deltas, a last chunk with finish_reason and the `amend`
        field, a usage chunk if asked for, then [DONE]. A failure mid-reply is sent as an
        error event (the openai client raises it)."""
        head = {**self._head(req), "object": "chat.completion.chunk"}

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> bytes:
            return sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish}], **extra})

        framer = DeltaFramer()
        yield chunk({"role": "assistant", "content": ""})
        item = first
        try:
            while True:
                if isinstance(item, Outcome):
                    delta = framer.feed(item.content, final=True)
                    if delta:
                        yield chunk({"content": delta})
                    yield chunk({}, item.finish_reason, amend=item.amend)
                    if req.include_usage:
                        yield sse({**head, "choices": [], "usage": item.usage})
                    break
                delta = framer.feed(item)
                if delta:
                    yield chunk({"content": delta})
                item = await anext(rest)
        except APIError as exc:
            yield sse(exc.body())
            return
        except Exception as exc:
            log.exception("streamed chat completion failed")
            yield sse(APIError(500, f"The reply failed: {type(exc).__name__}: {exc}",
                               type_="server_error").body())
            return
        yield sse("[DONE]")
