"""The HTTP API (FastAPI), served beside the Gradio UI from the same process (rag.server).

A thin view of `rag.service.Service`; request and response bodies are `rag.schema` models. Routes:

    POST /v1/chat/completions     OpenAI-compatible chat (streaming SSE or not), plus `citations`/`refused`
    GET  /v1/models               the one model id, "vj-rag"
    POST /v1/retrieve             hybrid retrieval only (RetrievalOut)
    POST /v1/connect              the connection finder (`rag connect --json` object)
    GET  /v1/documents            indexed documents (admin token)
    POST /v1/documents            upload md/txt/html/pdf files, multipart (admin token) -> IngestReportOut
    POST /v1/documents/{id}/reingest, DELETE /v1/documents/{id}   (admin token) -> IngestReportOut
    GET  /health                  index size, model, backend, version

Access: with RAG_API_KEYS set, the question endpoints need `Authorization: Bearer <key>` (401 otherwise);
document endpoints need RAG_ADMIN_TOKEN as `Authorization: Bearer <token>` or `X-Admin-Token: <token>`,
and answer 403 while no admin token is configured. Load: question endpoints pass a per-key rate limit and
a bounded admission queue (rag.limits); beyond either, 429 with Retry-After. Every error is OpenAI's
`{"error": {"message", "type", "param", "code"}}` with one sentence in the question's language (else the
Accept-Language header's, else English). Keys and tokens are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from rag.errors import BadInput, IndexBusy, IndexMissing, RagError, ServiceBusy
from rag.limits import Admission, Busy, RateLimited, RateLimiter
from rag.schema import (
    CitationOut,
    DocumentInfo,
    IngestReportOut,
    RetrievalOut,
    Status,
    answer_out,
    hit_out,
)
from rag.service import WARMING_UP, Service, report_out, validate_question
from rag.text import detect_language, nfc

if TYPE_CHECKING:
    from rag.chain import Turn
    from rag.types import Answer

log = logging.getLogger(__name__)

MODEL_ID = "vj-rag"
STREAM_PIECE_WORDS = 4  # words per streamed content chunk of the validated answer
MAX_JSON_BODY = 1024 * 1024  # bytes; a chat request is a few KB (LLM10: unbounded consumption)
MAX_UPLOAD_FILES = 20  # per upload request
MAX_HISTORY_TURNS = 8  # the pipeline looks at the last few turns only; the rest is not kept
MAX_TURN_CHARS = 4000


# ---------------------------------------------------------------------------------------- request bodies


class FiltersIn(BaseModel):
    """Metadata restrictions (all optional): ISO dates (inclusive), outlets, document ids, languages."""

    date_from: str = ""
    date_to: str = ""
    sources: list[str] = Field(default_factory=list)
    doc_ids: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)

    def to_filters(self) -> Any:
        from rag.retrieve import Filters

        filters = Filters(date_from=self.date_from.strip(), date_to=self.date_to.strip(), sources=tuple(self.sources),
                          doc_ids=tuple(self.doc_ids), languages=tuple(self.languages))
        return None if filters.is_empty() else filters


class ChatMessage(BaseModel):
    """An OpenAI chat message; `content` may be a string or a list of parts ({"type": "text", "text": …})."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, NFC-normalised (parts of a list joined by spaces; images etc. dropped)."""
        if isinstance(self.content, list):
            return nfc(" ".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text"))
        return nfc(self.content or "")


class ChatRequest(BaseModel):
    """OpenAI's chat request. Sampling options (temperature, max_tokens, …) are accepted and ignored;
    `filters`, `k` and `backend` are this API's extensions (pass them as `extra_body` with the openai client)."""

    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    filters: FiltersIn | None = None
    k: int | None = Field(None, ge=1, le=50)
    backend: Literal["extractive", "llm"] | None = None


class RetrieveRequest(BaseModel):
    question: str
    k: int | None = Field(None, ge=1, le=50)
    filters: FiltersIn | None = None


class ConnectRequest(BaseModel):
    """At least one of question, province, sector."""

    question: str | None = None
    province: str | None = None
    sector: str | None = None
    lang: Literal["vi", "en"] | None = None
    k: int = Field(10, ge=1, le=50)


# ---------------------------------------------------------------------------------------- chat responses


class ChatCompletionOut(BaseModel):
    """OpenAI's `chat.completion`, plus the answer's citations, refusal flag, notice and backend."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, int]
    citations: list[CitationOut] = Field(description="Sources [n] the answer text cites (extension).")
    refused: bool = Field(description="True when the documents do not answer the question (extension).")
    notice: str = Field("", description="E.g. that the LLM failed and the quoted answer is shown (extension).")
    backend: Literal["extractive", "llm"]
    language: Literal["vi", "en"]


class ApiError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


def _words(text: str) -> int:
    return len(text.split())


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """(question, history): the last user message, and earlier user→assistant pairs as Turns.

    System messages are ignored: the assistant keeps its own instructions (a client cannot replace them).
    """
    from rag.chain import Turn

    if not messages or messages[-1].role != "user":
        raise BadInput("The last message must be the user's question.", "Tin nhắn cuối phải là câu hỏi của người dùng.")
    turns: list[Turn] = []
    pending: str | None = None
    for m in messages[:-1]:
        if m.role == "user":
            pending = m.text()[:MAX_TURN_CHARS]
        elif m.role == "assistant" and pending is not None:
            turns.append(Turn(pending, m.text()[:MAX_TURN_CHARS]))
            pending = None
    return messages[-1].text(), turns[-MAX_HISTORY_TURNS:]


def completion(answer: Answer, model: str, prompt_words: int) -> ChatCompletionOut:
    """An Answer as a `chat.completion` (usage counts are words, not model tokens)."""
    out = answer_out(answer)
    done = _words(answer.text)
    return ChatCompletionOut(
        id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=model,
        choices=[{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop",
                  "logprobs": None}],
        usage={"prompt_tokens": prompt_words, "completion_tokens": done, "total_tokens": prompt_words + done},
        citations=out.citations, refused=out.refused, notice=out.notice, backend=out.backend, language=out.language,
    )


def stream_pieces(text: str, words: int = STREAM_PIECE_WORDS) -> list[str]:
    """The answer text cut into pieces of a few words; joined, they give the text back exactly."""
    tokens = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    return ["".join(tokens[i:i + words]) for i in range(0, len(tokens), words)]


def _sse(obj: Any) -> str:
    import json

    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------------------------------- the app


def create_api(service: Service) -> FastAPI:
    """The FastAPI app with every route; rag.server mounts the UI on it.

    Limits come from the service's settings: RAG_CONCURRENCY answers at once and RAG_MAX_QUEUE waiting
    (shared by all API clients of this process), RAG_API_RATE_LIMIT requests a minute per key.
    """
    settings = service.settings
    admission = Admission(settings.concurrency, settings.max_queue)
    limiter = RateLimiter(settings.api_rate_limit)
    api = FastAPI(
        title="Vietnam–Japan cooperation assistant API", version="1",
        description=(
            "OpenAI-compatible chat with cited answers over the indexed documents, retrieval, the connection "
            "finder and document management. Question endpoints: `Authorization: Bearer <key>` when "
            "RAG_API_KEYS is set. Document endpoints: RAG_ADMIN_TOKEN as `Authorization: Bearer <token>` or "
            "`X-Admin-Token`. Over the rate limit or the queue size: 429 with Retry-After."
        ),
    )
    api.state.admission = admission
    api.state.limiter = limiter
    upload_limit = int(settings.max_file_mb * 1024 * 1024) * MAX_UPLOAD_FILES + MAX_JSON_BODY
    api.add_middleware(BodyLimit, json_limit=MAX_JSON_BODY, upload_limit=upload_limit)

    # ------------------------------------------------------------------ errors
    def lang_of(request: Request, text: str = "") -> str:
        """The language of an error sentence: the question's, else Accept-Language's, else English."""
        if text.strip():
            return "en" if detect_language(text) == "en" else "vi"
        accept = request.headers.get("accept-language", "").strip().lower()
        return "vi" if accept.startswith("vi") else "en"

    def to_api_error(exc: RagError, lang: str) -> ApiError:
        msg = exc.message(lang)
        if isinstance(exc, RateLimited):
            return ApiError(429, msg, "rate_limit_error", "rate_limit_exceeded", {"Retry-After": str(exc.retry_after)})
        if isinstance(exc, Busy):
            return ApiError(429, msg, "rate_limit_error", "server_busy", {"Retry-After": str(exc.retry_after)})
        if isinstance(exc, ServiceBusy):
            return ApiError(429, msg, "rate_limit_error", "server_busy", {"Retry-After": "1"})
        if isinstance(exc, BadInput):
            return ApiError(400, msg, "invalid_request_error", "bad_input")
        if isinstance(exc, IndexBusy):
            return ApiError(409, msg, "conflict_error", "index_busy", {"Retry-After": "5"})
        if isinstance(exc, IndexMissing):
            return ApiError(503, msg, "service_unavailable", "index_missing")
        return ApiError(500, msg, "server_error", "internal_error")

    @api.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @api.exception_handler(RagError)
    async def on_rag_error(request: Request, exc: RagError) -> JSONResponse:
        err = to_api_error(exc, getattr(request.state, "lang", None) or lang_of(request))
        return await on_api_error(request, err)

    @api.exception_handler(_TooLarge)
    async def on_too_large(request: Request, exc: _TooLarge) -> JSONResponse:
        return await on_api_error(request, too_large(request.headers.get("accept-language", ""), exc.limit))

    @api.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        if lang_of(request) == "vi":
            msg = f"Yêu cầu không hợp lệ ở '{where}': {first.get('msg', '')}."
        else:
            msg = f"The request is not valid at '{where}': {first.get('msg', '')}."
        return await on_api_error(request, ApiError(400, msg, "invalid_request_error", "invalid_request"))

    async def call(fn: Any, *args: Any) -> Any:
        """Run a blocking service call in a worker thread; unexpected failures become one sentence (500)."""
        try:
            return await run_in_threadpool(fn, *args)
        except (RagError, ApiError):
            raise
        except Exception as exc:
            log.exception("Unexpected error in the API")
            raise RagError() from exc

    # ------------------------------------------------------------------ access
    def bearer(request: Request) -> str:
        value = request.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def check_api_key(request: Request, lang: str) -> str:
        """Authorize a question call; returns the rate-limit key (a hash of the API key, or the client address)."""
        key = bearer(request)
        try:
            service.authorize_api_key(key)
        except RagError as exc:
            raise ApiError(401, exc.message(lang), "authentication_error", "invalid_api_key",
                           {"WWW-Authenticate": "Bearer"}) from None
        if key and service.settings.api_key_list():
            # Hashed so the limiter's table never holds a key in clear.
            return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
        return "addr:" + (request.client.host if request.client else "?")

    def check_admin(request: Request) -> None:
        lang = lang_of(request)
        request.state.lang = lang
        token = request.headers.get("x-admin-token", "").strip() or bearer(request)
        try:
            service.authorize_admin(token)
        except RagError as exc:
            if not service.admin_enabled:
                raise ApiError(403, exc.message(lang), "permission_error", "admin_disabled") from None
            raise ApiError(401, exc.message(lang), "authentication_error", "invalid_admin_token",
                           {"WWW-Authenticate": "Bearer"}) from None

    def admit_question(request: Request, text: str) -> str:
        """Common front of the question endpoints: language, key, rate limit, readiness. Returns the language."""
        lang = lang_of(request, text)
        request.state.lang = lang
        rate_key = check_api_key(request, lang)
        limiter.check(rate_key)
        # While models load, say so at once (503 + Retry-After) instead of holding the connection; a failed
        # start-up falls through, and the service call raises its sentence.
        if not service.ready and service.status().status == "warming_up":
            raise ApiError(503, WARMING_UP[lang], "service_unavailable", "warming_up", {"Retry-After": "5"})
        return lang

    # ------------------------------------------------------------------ status
    @api.get("/health", response_model=Status, tags=["status"])
    def health() -> Status:
        """Index size, embedding model, answer backend, version; `warming_up` while models load."""
        return service.status()

    # ------------------------------------------------------------------ OpenAI-compatible chat
    @api.get("/v1/models", tags=["chat"])
    def models(request: Request) -> dict[str, Any]:
        """The one model this server answers as (any `model` value is accepted and echoed in chat)."""
        check_api_key(request, lang_of(request))
        return {"object": "list", "data": [_model_card()]}

    @api.get("/v1/models/{model_id}", tags=["chat"])
    def model(model_id: str, request: Request) -> dict[str, Any]:
        lang = lang_of(request)
        check_api_key(request, lang)
        if model_id != MODEL_ID:
            msg = (f"Không có mô hình '{model_id}'; hãy dùng '{MODEL_ID}'." if lang == "vi"
                   else f"There is no model '{model_id}'; use '{MODEL_ID}'.")
            raise ApiError(404, msg, "invalid_request_error", "model_not_found")
        return _model_card()

    @api.post("/v1/chat/completions", tags=["chat"], response_model=ChatCompletionOut,
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "A chat.completion, or with stream=true an SSE stream of "
                                              "chat.completion.chunk objects ending in `data: [DONE]`; the "
                                              "last chunk before [DONE] carries citations, refused and notice."}})
    async def chat(body: ChatRequest, request: Request) -> Any:
        """Answer the last user message (earlier turns are the conversation) with `[n]` citations."""
        last_user = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
        lang = admit_question(request, last_user)
        question, history = split_messages(body.messages)
        question = validate_question(question)
        filters = body.filters.to_filters() if body.filters else None
        prompt_words = sum(_words(m.text()) for m in body.messages)
        if not body.stream:
            async with admission.slot():
                answer = await call(service.ask, question, history, filters, body.k, body.backend)
            return completion(answer, body.model, prompt_words)
        if admission.in_flight >= admission.concurrency + admission.max_queue:  # refuse before the 200
            raise Busy(admission.retry_after())
        return StreamingResponse(
            _stream(question, history, filters, body, lang, prompt_words), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(question: str, history: list[Turn], filters: Any, body: ChatRequest, lang: str,
                      prompt_words: int) -> AsyncIterator[str]:
        """OpenAI's chunk stream. The text streamed is the validated answer (citations checked, fallback
        applied), never raw LLM tokens that a later check could withdraw — SSE has no way to take text back."""
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                         **extra})

        yield chunk({"role": "assistant", "content": ""})
        try:
            async with admission.slot():
                answer = await call(service.ask, question, history, filters, body.k, body.backend)
        except (RagError, ApiError) as exc:
            err = exc if isinstance(exc, ApiError) else to_api_error(exc, lang)
            yield _sse(err.body())
            yield "data: [DONE]\n\n"
            return
        for piece in stream_pieces(answer.text):
            yield chunk({"content": piece})
        out = completion(answer, body.model, prompt_words)
        yield chunk({}, "stop", citations=[c.model_dump() for c in out.citations], refused=out.refused,
                    notice=out.notice, backend=out.backend, language=out.language)
        if (body.stream_options or {}).get("include_usage"):
            yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                        "choices": [], "usage": out.usage})
        yield "data: [DONE]\n\n"

    # ------------------------------------------------------------------ retrieval and connections
    @api.post("/v1/retrieve", response_model=RetrievalOut, tags=["search"])
    async def retrieve(body: RetrieveRequest, request: Request) -> RetrievalOut:
        """The chunks hybrid retrieval finds for a question (as `rag retrieve --json`)."""
        admit_question(request, body.question)
        question = validate_question(body.question)
        filters = body.filters.to_filters() if body.filters else None
        async with admission.slot():
            result = await call(service.retrieve, question, body.k, filters)
        return RetrievalOut(
            question=result.plan.question, language="en" if result.plan.language == "en" else "vi",
            query_language=result.plan.language, retrieved=[hit_out(h) for h in result.hits],
            timings_ms=result.timings_ms,
        )

    @api.post("/v1/connect", tags=["search"])
    async def connect(body: ConnectRequest, request: Request) -> dict[str, Any]:
        """Who to contact, programmes and Japanese localities the documents name (as `rag connect --json`)."""
        from rag.connect import to_json

        q = (body.question or "").strip()
        lang = admit_question(request, q)
        answer_lang = body.lang or (lang if q else "vi")
        async with admission.slot():
            answer = await call(service.connect, q or None, body.province, body.sector, answer_lang, body.k)
        return to_json(answer)

    # ------------------------------------------------------------------ documents (admin)
    @api.get("/v1/documents", response_model=list[DocumentInfo], tags=["documents"])
    async def documents(request: Request) -> list[DocumentInfo]:
        """Indexed documents with chunk counts, dates and when they were added, newest first."""
        check_admin(request)
        return await call(service.documents)

    @api.post("/v1/documents", response_model=IngestReportOut, tags=["documents"])
    async def upload(request: Request, files: list[UploadFile] = File(...)) -> IngestReportOut:  # noqa: B008
        """Add or update documents (.md .txt .html .pdf; several `files` parts) and ingest them; files that
        cannot be loaded are listed under `skipped` in the report."""
        check_admin(request)
        limit = int(settings.max_file_mb * 1024 * 1024)
        if len(files) > MAX_UPLOAD_FILES:
            raise BadInput(f"At most {MAX_UPLOAD_FILES} files per upload; nothing was changed.",
                           f"Tối đa {MAX_UPLOAD_FILES} tệp mỗi lần tải lên; chưa có gì thay đổi.")
        items: list[tuple[str, bytes]] = []
        for f in files:
            data = await f.read(limit + 1)  # never more than the limit in memory
            if len(data) > limit:
                raise BadInput(f"{f.filename} is larger than {settings.max_file_mb:g} MB; nothing was changed.",
                               f"{f.filename} lớn hơn {settings.max_file_mb:g} MB; chưa có gì thay đổi.")
            items.append((f.filename or "", data))
        return report_out(await call(service.add_files, items))

    async def known(doc_id: str, request: Request) -> None:
        docs = await call(service.documents)
        if not any(d.doc_id == doc_id for d in docs):
            lang = request.state.lang
            msg = (f"Không có tài liệu '{doc_id}' trong chỉ mục." if lang == "vi"
                   else f"There is no document '{doc_id}' in the index.")
            raise ApiError(404, msg, "not_found_error", "document_not_found")

    @api.post("/v1/documents/{doc_id}/reingest", response_model=IngestReportOut, tags=["documents"])
    async def reingest(doc_id: str, request: Request) -> IngestReportOut:
        """Clean, chunk and embed one document again from its file."""
        check_admin(request)
        await known(doc_id, request)
        return report_out(await call(service.reingest, doc_id))

    @api.delete("/v1/documents/{doc_id}", response_model=IngestReportOut, tags=["documents"])
    async def delete(doc_id: str, request: Request) -> IngestReportOut:
        """Remove a document from the index (its file moves to RAG_HOME/trash)."""
        check_admin(request)
        await known(doc_id, request)
        return report_out(await call(service.delete_document, doc_id))

    return api


class BodyLimit:
    """ASGI middleware: request bodies to /v1/* over a limit get 413 in OpenAI's error shape, whether they
    announce their length or stream it chunked — before FastAPI buffers or parses them. Other paths (the
    Gradio UI, which has its own upload cap) pass untouched."""

    def __init__(self, app: Any, *, json_limit: int, upload_limit: int) -> None:
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/documents"
        limit = self.upload_limit if upload else self.json_limit
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            await self._reject(scope, send, limit)
            return
        seen = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, send, limit)

    @staticmethod
    async def _reject(scope: dict[str, Any], send: Any, limit: int) -> None:
        headers = dict(scope.get("headers") or [])
        err = too_large(headers.get(b"accept-language", b"").decode("latin-1"), limit)
        await JSONResponse(err.body(), status_code=413)(scope, _no_receive, send)


def too_large(accept_language: str, limit: int) -> ApiError:
    """The 413 error for a body over `limit` bytes."""
    mb = f"{limit / (1024 * 1024):g}"
    msg = (f"Yêu cầu quá lớn (tối đa {mb} MB); chưa có gì thay đổi." if accept_language.strip().lower().startswith("vi")
           else f"The request is too large (at most {mb} MB); nothing was changed.")
    return ApiError(413, msg, "invalid_request_error", "request_too_large")


class _TooLarge(HTTPException):
    """Raised from the body reader; an HTTPException so FastAPI's body parsing lets it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413)
        self.limit = limit


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _model_card() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "vj-rag"}
