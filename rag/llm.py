"""Chat models behind any OpenAI-compatible server (llama.cpp, vLLM, Ollama, LM Studio, OpenAI, ...).

`OpenAICompatibleClient` POSTs to `{base_url}/chat/completions`, either as one JSON response
(`complete`) or as a server-sent-event stream of content deltas (`stream`). Failures become `LLMError`
subclasses carrying one sentence in Vietnamese and English, so the caller can show it and fall back
to the extractive answer:

    LLMUnreachable        connection refused, DNS failure, connection dropped before a response
    LLMTimeout            no connection / no (first) token within the configured timeouts
    LLMAuthError          HTTP 401 / 403
    LLMHTTPError          any other non-2xx status (429 and 5xx only after the retries ran out)
    LLMMalformedResponse  non-JSON body, no `choices`, garbage in the event stream
    LLMStreamInterrupted  the stream ended without `[DONE]` and without a finish reason

Retries (429, 5xx, connection failures) happen only before the first token was yielded: a stream that
already showed text to the user is never silently restarted. The API key is sent in the Authorization
header only; it is scrubbed from every error detail and never appears in logs or reprs.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import httpx

from rag.config import Settings
from rag.errors import LLMError

log = logging.getLogger(__name__)

_DETAIL_LIMIT = 300  # characters of a server's error body kept in an exception's detail
_USERINFO = re.compile(r"//[^/@\s]+@")


# --------------------------------------------------------------------------------------------- errors
class LLMNotConfigured(LLMError):
    """No usable `RAG_LLM_BASE_URL` was given."""

    vi = "Chưa cấu hình máy chủ mô hình ngôn ngữ (RAG_LLM_BASE_URL)."
    en = "No language-model server is configured (RAG_LLM_BASE_URL)."


class LLMUnreachable(LLMError):
    """The server could not be reached: connection refused, unknown host, connection dropped."""

    vi = "Không kết nối được tới máy chủ mô hình ngôn ngữ."
    en = "The language-model server cannot be reached."


class LLMAuthError(LLMError):
    """The server rejected the credentials (HTTP 401 or 403)."""

    vi = "Máy chủ mô hình ngôn ngữ từ chối khóa API; hãy kiểm tra RAG_LLM_API_KEY."
    en = "The language-model server rejected the API key; check RAG_LLM_API_KEY."


class LLMTimeout(LLMError):
    """No connection, or no (first) token, within the configured timeouts."""

    vi = "Máy chủ mô hình ngôn ngữ không phản hồi kịp thời."
    en = "The language-model server did not respond in time."


class LLMMalformedResponse(LLMError):
    """The server answered, but not in the OpenAI chat-completions format."""

    vi = "Máy chủ mô hình ngôn ngữ trả về dữ liệu không đọc được."
    en = "The language-model server returned a response that could not be read."


class LLMHTTPError(LLMError):
    """The server answered with an HTTP error status; `status_code` says which."""

    def __init__(self, status_code: int, *, detail: str = "") -> None:
        self.status_code = status_code
        super().__init__(
            en=f"The language-model server returned an error (HTTP {status_code}).",
            vi=f"Máy chủ mô hình ngôn ngữ trả về lỗi (HTTP {status_code}).",
            detail=detail,
        )


class LLMStreamInterrupted(LLMError):
    """The streamed answer was cut off: no `[DONE]` and no finish reason arrived."""

    vi = "Câu trả lời từ máy chủ mô hình ngôn ngữ bị ngắt giữa chừng."
    en = "The language-model server's answer was cut off midway."


# --------------------------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class Usage:
    """Token counts reported by the server for one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@runtime_checkable
class ChatModel(Protocol):
    """A chat model: `messages` are OpenAI-style `{"role": ..., "content": ...}` dicts."""

    @property
    def name(self) -> str:
        """The model name sent to the server."""
        ...

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.1,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """Yield the answer's content deltas as they arrive; raise `LLMError` on failure."""
        ...

    def complete(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.1,
        stop: list[str] | None = None,
    ) -> str:
        """Return the whole answer at once; raise `LLMError` on failure."""
        ...


# --------------------------------------------------------------------------------------------- client
class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying; `error` is raised if retries run out."""

    def __init__(self, error: LLMError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class OpenAICompatibleClient:
    """`ChatModel` over HTTP for any server implementing OpenAI's `/chat/completions`.

    `base_url` includes the API prefix, e.g. `http://127.0.0.1:8080/v1`. `max_retries` extra attempts
    are made on 429, 5xx and connection failures, waiting `backoff_base * 2**attempt` seconds (or the
    server's `Retry-After`), never more than `max_backoff`. After each call `last_usage` holds the
    token counts the server reported (or None) and `last_finish_reason` why generation stopped.
    One client may be shared, but `last_usage`/`last_finish_reason` then describe whichever call
    finished last.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        *,
        max_backoff: float = 10.0,
    ) -> None:
        base_url = (base_url or "").strip()
        if not base_url.startswith(("http://", "https://")):
            raise LLMNotConfigured(detail="the base URL must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.last_usage: Usage | None = None
        self.last_finish_reason: str | None = None
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        # trust_env=False: no proxy, netrc or certificate settings picked up from the environment
        # behind the settings object's back (a stray HTTP_PROXY would otherwise hijack 127.0.0.1).
        self._http = httpx.Client(
            timeout=timeout, transport=transport, follow_redirects=False, trust_env=False
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> OpenAICompatibleClient:
        """The client configured by `RAG_LLM_*`; raises `LLMNotConfigured` when no base URL is set."""
        if not settings.llm_base_url.strip():
            raise LLMNotConfigured()
        return cls(
            settings.llm_base_url,
            settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value(),
            connect_timeout=settings.llm_connect_timeout,
            read_timeout=settings.llm_read_timeout,
            max_retries=settings.llm_max_retries,
            transport=transport,
        )

    # ------------------------------------------------------------------ plumbing
    @property
    def name(self) -> str:
        """The configured model name ("" lets the server pick its loaded model)."""
        return self.model

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> OpenAICompatibleClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"OpenAICompatibleClient(base_url={self._scrub(self.base_url)!r}, model={self.model!r}, api_key=<{key}>)"

    def _scrub(self, text: str) -> str:
        """`text` with the API key and any `user:password@` in URLs replaced by ***."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return _USERINFO.sub("//***@", text)

    def _detail(self, text: str) -> str:
        text = self._scrub(" ".join(text.split()))
        return text if len(text) <= _DETAIL_LIMIT else text[:_DETAIL_LIMIT] + "…"

    def _headers(self, streaming: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if streaming else "application/json",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _payload(
        self,
        messages: list[dict],
        max_tokens: int | None,
        temperature: float,
        stop: list[str] | None,
        streaming: bool,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"messages": messages, "temperature": temperature, "stream": streaming}
        if self.model:
            payload["model"] = self.model
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if stop:
            payload["stop"] = list(stop)
        return payload

    def _status_error(self, response: httpx.Response, body: str) -> LLMError | _Retry:
        """The error for a non-2xx response, wrapped in `_Retry` when another attempt may succeed."""
        status = response.status_code
        detail = self._detail(f"HTTP {status} from {self.url}: {body}")
        if status in (401, 403):
            return LLMAuthError(detail=detail)
        error = LLMHTTPError(status, detail=detail)
        if status == 429 or status >= 500:
            return _Retry(error, _retry_after(response.headers.get("retry-after")))
        return error

    def _transport_error(self, exc: httpx.TransportError) -> LLMError | _Retry:
        """Map an httpx failure that happened before any response arrived."""
        detail = self._detail(f"{type(exc).__name__} talking to {self.url}: {exc}")
        if isinstance(exc, httpx.ConnectTimeout):
            return _Retry(LLMTimeout(detail=detail))
        if isinstance(exc, httpx.TimeoutException):
            return LLMTimeout(detail=detail)  # a slow model is not retried: it would only double the wait
        if isinstance(exc, httpx.ConnectError):
            return _Retry(LLMUnreachable(detail=detail))
        return LLMUnreachable(detail=detail)

    def _open(self, payload: dict[str, Any], streaming: bool) -> httpx.Response:
        """POST `payload` and return the open (unread) 2xx response, retrying what may succeed later.

        429, 5xx and connection failures are retried up to `max_retries` times, waiting
        `backoff_base * 2**attempt` seconds or the server's `Retry-After`, capped at `max_backoff`.
        """
        attempt = 0
        while True:
            try:
                return self._attempt(payload, streaming)
            except _Retry as retry:
                if attempt >= self.max_retries:
                    raise retry.error from retry.__cause__
                delay = self.backoff_base * (2**attempt) if retry.retry_after is None else retry.retry_after
                delay = min(max(delay, 0.0), self.max_backoff)
                attempt += 1
                log.warning(
                    "LLM request failed (%s); retry %d/%d in %.2f s",
                    retry.error.detail,
                    attempt,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)

    def _attempt(self, payload: dict[str, Any], streaming: bool) -> httpx.Response:
        request = self._http.build_request("POST", self.url, json=payload, headers=self._headers(streaming))
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.is_success:
            return response
        try:
            body = response.read().decode("utf-8", "replace")
        except httpx.HTTPError:
            body = ""
        finally:
            response.close()
        raise self._status_error(response, body)

    def _body_errors(self, exc: httpx.TransportError) -> LLMError:
        """Map an httpx failure while reading a 2xx response's body."""
        what = f"{type(exc).__name__} while reading the answer from {self.url}: {exc}"
        if isinstance(exc, httpx.TimeoutException):
            return LLMTimeout(detail=self._detail(what))
        return LLMStreamInterrupted(detail=self._detail(what))

    # ------------------------------------------------------------------ non-streaming
    def complete(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.1,
        stop: list[str] | None = None,
    ) -> str:
        """POST one non-streaming request and return `choices[0].message.content`."""
        self.last_usage, self.last_finish_reason = None, None
        response = self._open(self._payload(messages, max_tokens, temperature, stop, streaming=False), False)
        try:
            raw = response.read().decode("utf-8", "replace")
        except httpx.TransportError as exc:
            raise self._body_errors(exc) from exc
        finally:
            response.close()
        return self._parse_completion(raw)

    def _parse_completion(self, raw: str) -> str:
        """`choices[0].message.content` of a chat-completion body; records usage and finish reason."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise LLMMalformedResponse(detail=self._detail(f"non-JSON body: {raw}")) from exc
        choice = _first_choice(data)
        message = choice.get("message") if choice is not None else None
        content = message.get("content") if isinstance(message, dict) else None
        if (
            choice is None
            or not isinstance(message, dict)
            or (content is not None and not isinstance(content, str))
        ):
            raise LLMMalformedResponse(detail=self._detail(f"no string choices[0].message.content in: {raw}"))
        self.last_usage = _usage(data.get("usage"))
        self.last_finish_reason = str(choice.get("finish_reason") or "stop")
        return content or ""

    # ------------------------------------------------------------------ streaming
    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.1,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """Yield `choices[0].delta.content` pieces of a server-sent-event stream as they arrive.

        Raises `LLMStreamInterrupted` (after the partial pieces were yielded) when the stream ends
        without `[DONE]` and without a finish reason, so a cut answer never looks complete.
        """
        self.last_usage, self.last_finish_reason = None, None
        response = self._open(self._payload(messages, max_tokens, temperature, stop, streaming=True), True)
        try:
            yield from self._read_stream(response)
        finally:
            response.close()

    def _read_stream(self, response: httpx.Response) -> Iterator[str]:
        done, finish = False, None
        try:
            if response.headers.get("content-type", "").lower().startswith("application/json"):
                # Some servers ignore `stream: true` and answer in one piece; accept that.
                yield self._parse_completion(response.read().decode("utf-8", "replace"))
                return
            for data in _sse_data(response.iter_lines()):
                if data.strip() == "[DONE]":
                    done = True
                    break
                content, chunk_finish, usage = self._parse_chunk(data)
                if usage is not None:
                    self.last_usage = usage
                if chunk_finish:
                    finish = self.last_finish_reason = chunk_finish
                if content:
                    yield content
        except httpx.TransportError as exc:
            raise self._body_errors(exc) from exc
        if not done and finish is None:
            raise LLMStreamInterrupted(
                detail=self._detail(f"stream from {self.url} ended without [DONE] or finish_reason")
            )

    def _parse_chunk(self, data: str) -> tuple[str, str | None, Usage | None]:
        """(content delta, finish reason, usage) of one `chat.completion.chunk` event."""
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise LLMMalformedResponse(detail=self._detail(f"non-JSON event: {data}")) from exc
        if not isinstance(chunk, dict):
            raise LLMMalformedResponse(detail=self._detail(f"event is not an object: {data}"))
        if "error" in chunk:
            error = chunk["error"]
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and 400 <= code <= 599 else 500
            raise LLMHTTPError(status, detail=self._detail(f"error event in stream: {error}"))
        usage = _usage(chunk.get("usage"))
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise LLMMalformedResponse(detail=self._detail(f"event without choices: {data}"))
        if not choices:  # e.g. the trailing usage-only chunk
            return "", None, usage
        choice = choices[0]
        delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(delta, dict) or (content is not None and not isinstance(content, str)):
            raise LLMMalformedResponse(detail=self._detail(f"no string choices[0].delta.content in: {data}"))
        finish = choice.get("finish_reason")
        return content or "", str(finish) if finish else None, usage


# --------------------------------------------------------------------------------------------- helpers
def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The `data` payload of each server-sent event (multi-line data joined by newlines).

    Comments (`: ping`) and `event:`/`id:`/`retry:` fields are skipped. Any other line is not SSE at
    all (an HTML error page, plain text) and is passed on as data so the JSON check rejects it rather
    than the stream silently looking empty. An event not followed by a blank line is still dispatched.
    """
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
        elif field not in ("event", "id", "retry"):
            data.append(line)
    if data:
        yield "\n".join(data)


def _first_choice(data: Any) -> dict | None:
    if not isinstance(data, dict):
        return None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    return choices[0]


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
        total = int(raw.get("total_tokens") or prompt + completion)
    except (TypeError, ValueError):
        return None
    return Usage(prompt, completion, total)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
