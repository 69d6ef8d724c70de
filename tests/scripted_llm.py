"""A real OpenAI-compatible HTTP server for tests, driven by a queue of scripted behaviours.

It listens on 127.0.0.1 (a free port) in a background thread and speaks the `/v1/chat/completions`
protocol the way real servers do: JSON `chat.completion` objects for `stream: false`, and for
`stream: true` a chunked `text/event-stream` of `chat.completion.chunk` events ending in
`data: [DONE]`. Each POST to `/v1/chat/completions` consumes the next queued behaviour; with the queue
empty it answers 500 with an explanatory error (so a test that under-scripts fails visibly).
`GET /v1/models` lists the model (for readiness probes); other paths get a 404 without consuming.

    with ScriptedLLM() as llm:
        llm.enqueue_status(429, retry_after=0.2)
        llm.enqueue_reply("Xin chào [1].", chunks=["Xin ", "chào ", "[1]."])
        client = OpenAICompatibleClient(llm.base_url, llm.model)
        ...
        assert len(llm.requests) == 2 and llm.requests[-1].body["stream"] is True

Behaviours (each applies to the streaming and the non-streaming form of the request):

    enqueue_reply(text, chunks=None, finish_reason="stop", usage=None, fragment_bytes=None)
    enqueue_status(status, retry_after=None, message=None)
    enqueue_auth_error()                 401 whose message echoes the bearer token (as some servers do)
    enqueue_cut_stream(partial_text, chunks=None, abort=True)
    enqueue_slow_first_token(delay_s, text="...")
    enqueue_garbage()

Every request to any path is recorded in `requests` (method, path, lower-cased headers, raw body and
the parsed JSON body), in arrival order.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    raw: bytes
    body: Any = None  # parsed JSON, or None when the body was empty or not JSON

    @property
    def stream(self) -> bool:
        """Whether the client asked for a streamed answer."""
        return isinstance(self.body, dict) and bool(self.body.get("stream"))


@dataclass(frozen=True)
class _Behaviour:
    kind: str  # reply | status | cut | slow | garbage
    text: str = ""
    chunks: tuple[str, ...] = ()
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    status: int = 200
    retry_after: float | str | None = None
    message: str = ""
    delay_s: float = 0.0
    abort: bool = True
    fragment_bytes: int | None = None


def split_chunks(text: str, chunks: list[str] | int | None) -> tuple[str, ...]:
    """`text` cut into stream deltas: the given pieces (which must join to `text`), `n` near-equal
    pieces, or (None) one piece per word with its trailing space."""
    if isinstance(chunks, list | tuple):
        if "".join(chunks) != text:
            raise ValueError("the chunks must join to the text")
        return tuple(chunks)
    if isinstance(chunks, int):
        n = max(1, min(chunks, len(text)))
        size = -(-len(text) // n)
        return tuple(text[i : i + size] for i in range(0, len(text), size)) or ("",)
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word + " ")
    pieces[-1] = pieces[-1][:-1]
    return tuple(p for p in pieces if p) or ("",)


class ScriptedLLM:
    """The scripted server; use as a context manager (or call `start()`/`stop()`)."""

    def __init__(self, model: str = "scripted-model") -> None:
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._queue: deque[_Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ScriptedLLM:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-llm",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; sleeping behaviours wake up and give up."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """What a client takes as its base URL, e.g. http://127.0.0.1:54321/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pending(self) -> int:
        """Behaviours queued but not yet consumed."""
        with self._lock:
            return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded POSTs to /v1/chat/completions."""
        return [r for r in self.requests if r.path == CHAT_PATH and r.method == "POST"]

    # ------------------------------------------------------------------ scripting
    def _push(self, behaviour: _Behaviour) -> ScriptedLLM:
        with self._lock:
            self._queue.append(behaviour)
        return self

    def enqueue_reply(
        self,
        text: str,
        *,
        chunks: list[str] | int | None = None,
        finish_reason: str = "stop",
        usage: dict[str, int] | None = None,
        fragment_bytes: int | None = None,
    ) -> ScriptedLLM:
        """A successful answer `text`. Streamed as `chunks` deltas (see `split_chunks`); with
        `fragment_bytes`, every event is written in pieces of that many bytes (splitting UTF-8
        characters across HTTP chunks). `usage` overrides the word-count based token usage."""
        return self._push(
            _Behaviour(
                "reply",
                text=text,
                chunks=split_chunks(text, chunks),
                finish_reason=finish_reason,
                usage=usage,
                fragment_bytes=fragment_bytes,
            )
        )

    def enqueue_status(
        self, status: int, *, retry_after: float | str | None = None, message: str | None = None
    ) -> ScriptedLLM:
        """An OpenAI-style JSON error with HTTP `status` (and a `Retry-After` header when given)."""
        return self._push(
            _Behaviour(
                "status", status=status, retry_after=retry_after, message=message or f"scripted HTTP {status}"
            )
        )

    def enqueue_auth_error(self) -> ScriptedLLM:
        """401 invalid_api_key; the message echoes the received bearer token in full."""
        return self._push(_Behaviour("status", status=401, message="Incorrect API key provided: {token}"))

    def enqueue_cut_stream(
        self, partial_text: str, *, chunks: list[str] | int | None = None, abort: bool = True
    ) -> ScriptedLLM:
        """Stream `partial_text` then stop without a finish reason or `[DONE]`: with `abort` the TCP
        connection is dropped mid-body (incomplete chunked encoding); without it the HTTP body ends
        cleanly, as a proxy that gave up would. A non-streaming request gets a truncated JSON body."""
        return self._push(
            _Behaviour("cut", text=partial_text, chunks=split_chunks(partial_text, chunks), abort=abort)
        )

    def enqueue_slow_first_token(self, delay_s: float, text: str = "Chậm mà chắc.") -> ScriptedLLM:
        """Send the response headers at once but the first token only after `delay_s` seconds
        (a non-streaming request gets its whole response after the delay)."""
        return self._push(_Behaviour("slow", text=text, chunks=split_chunks(text, None), delay_s=delay_s))

    def enqueue_garbage(self) -> ScriptedLLM:
        """HTTP 200 that is not the protocol: non-JSON `data:` events, or a non-JSON body."""
        return self._push(_Behaviour("garbage"))

    def _next(self) -> _Behaviour | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    # ------------------------------------------------------------------ protocol objects
    def completion(self, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        """A `chat.completion` object."""
        return {
            "id": f"chatcmpl-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }

    def chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, cid: str = "chatcmpl-x"
    ) -> dict[str, Any]:
        """A `chat.completion.chunk` object."""
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }


def _usage_for(body: Any, text: str) -> dict[str, int]:
    messages = body.get("messages", []) if isinstance(body, dict) else []
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict)) + 1
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _make_handler(llm: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ScriptedLLM/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            return

        # -------------------------------------------------------------- plumbing
        def _record(self) -> RecordedRequest:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            request = RecordedRequest(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw, body
            )
            with llm._lock:
                llm.requests.append(request)
            return request

        def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            code: Any = "invalid_api_key" if status == 401 else status
            self._send_json(
                status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers
            )

        def _start_sse(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _write_chunked(self, data: bytes, fragment_bytes: int | None = None) -> None:
            step = fragment_bytes or len(data) or 1
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                self.wfile.write(f"{len(piece):X}\r\n".encode() + piece + b"\r\n")

        def _event(self, payload: Any, fragment_bytes: int | None = None) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
            self._write_chunked(f"data: {text}\n\n".encode(), fragment_bytes)

        def _end_chunked(self) -> None:
            self.wfile.write(b"0\r\n\r\n")

        def _abort(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        # -------------------------------------------------------------- routes
        def do_GET(self) -> None:
            self._record()
            if self.path.rstrip("/") == MODELS_PATH:
                self._send_json(
                    200,
                    {"object": "list", "data": [{"id": llm.model, "object": "model", "owned_by": "tests"}]},
                )
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            request = self._record()
            if self.path != CHAT_PATH:
                self._error(404, f"no route {self.path}")
                return
            if not isinstance(request.body, dict) or not isinstance(request.body.get("messages"), list):
                self._error(400, "the body must be a JSON object with a 'messages' list")
                return
            behaviour = llm._next()
            if behaviour is None:
                self._error(500, "ScriptedLLM: no behaviour left in the queue")
                return
            try:
                _BEHAVIOURS[behaviour.kind](self, llm, behaviour, request)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout)
                self.close_connection = True

    return Handler


# ------------------------------------------------------------------------------------ behaviours
def _reply(h: Any, llm: ScriptedLLM, b: _Behaviour, request: RecordedRequest) -> None:
    if not request.stream:
        h._send_json(
            200, llm.completion(b.text, b.finish_reason, b.usage or _usage_for(request.body, b.text))
        )
        return
    h._start_sse()
    _reply_events(h, llm, b, request)


def _reply_events(h: Any, llm: ScriptedLLM, b: _Behaviour, request: RecordedRequest) -> None:
    """The events of a complete streamed answer, after the headers: deltas, finish, usage, [DONE]."""
    _deltas(h, llm, b.chunks, b.fragment_bytes)
    h._event(llm.chunk({}, b.finish_reason), b.fragment_bytes)
    options = request.body.get("stream_options") or {}
    if isinstance(options, dict) and options.get("include_usage"):
        usage = b.usage or _usage_for(request.body, b.text)
        h._event({**llm.chunk({}), "choices": [], "usage": usage}, b.fragment_bytes)
    h._event("[DONE]", b.fragment_bytes)
    h._end_chunked()


def _deltas(h: Any, llm: ScriptedLLM, chunks: tuple[str, ...], fragment_bytes: int | None = None) -> None:
    h._event(llm.chunk({"role": "assistant", "content": ""}), fragment_bytes)
    for piece in chunks:
        h._event(llm.chunk({"content": piece}), fragment_bytes)


def _status(h: Any, llm: ScriptedLLM, b: _Behaviour, request: RecordedRequest) -> None:
    headers = {"Retry-After": _fmt_seconds(b.retry_after)} if b.retry_after is not None else None
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth else "(none)"
    h._error(b.status, b.message.replace("{token}", token), headers)


def _cut(h: Any, llm: ScriptedLLM, b: _Behaviour, request: RecordedRequest) -> None:
    if not request.stream:
        full = json.dumps(
            llm.completion(b.text, "stop", _usage_for(request.body, b.text)), ensure_ascii=False
        ).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(full)))
        h.end_headers()
        h.wfile.write(full[: len(full) // 2])
        h._abort()
        return
    h._start_sse()
    _deltas(h, llm, b.chunks)
    if b.abort:
        h._abort()
    else:
        h._end_chunked()


def _slow(h: Any, llm: ScriptedLLM, b: _Behaviour, request: RecordedRequest) -> None:
    if not request.stream:
        if not llm._stopping.wait(b.delay_s):
            h._send_json(200, llm.completion(b.text, "stop", _usage_for(request.body, b.text)))
        return
    h._start_sse()
    if not llm._stopping.wait(b.delay_s):
        _reply_events(h, llm, b, request)


def _garbage(h: Any, llm: ScriptedLLM, b: _Behaviour, request: RecordedRequest) -> None:
    if not request.stream:
        data = b"<html><body>502 Bad Gateway (but sent as 200)</body></html>"
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        return
    h._start_sse()
    h._event("this is {not json")
    h._event("[DONE]")
    h._end_chunked()


def _fmt_seconds(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_BEHAVIOURS: dict[str, Callable[[Any, ScriptedLLM, _Behaviour, RecordedRequest], None]] = {
    "reply": _reply,
    "status": _status,
    "cut": _cut,
    "slow": _slow,
    "garbage": _garbage,
}


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A started `ScriptedLLM`, stopped after the test. To use it in another test module, import it
    (`from tests.scripted_llm import scripted_llm`) or register this module in conftest.py."""
    with ScriptedLLM() as server:
        yield server
