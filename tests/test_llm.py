"""The OpenAI-compatible client against a real HTTP server on loopback (tests/scripted_llm.py)."""

from __future__ import annotations

import logging
import socket
import time
import traceback
import unicodedata

import pytest

from rag.errors import LLMError
from rag.llm import (
    ChatModel,
    LLMAuthError,
    LLMHTTPError,
    LLMMalformedResponse,
    LLMNotConfigured,
    LLMStreamInterrupted,
    LLMTimeout,
    LLMUnreachable,
    OpenAICompatibleClient,
    Usage,
)
from tests.conftest import make_settings
from tests.scripted_llm import ScriptedLLM

MESSAGES = [
    {"role": "system", "content": "Chỉ trả lời từ tài liệu."},
    {"role": "user", "content": "Nhật Bản hỗ trợ Việt Nam những gì?"},
]
KEY = "sk-test-SECRET-0123456789abcdef"
VI_TEXT = "Nhật Bản cam kết hỗ trợ vốn ODA cho đường sắt đô thị Hà Nội và TP. Hồ Chí Minh [1]. Đổi mới sáng tạo! 🇻🇳🇯🇵"


@pytest.fixture
def llm():
    with ScriptedLLM() as server:
        yield server


def make_client(server: ScriptedLLM, **kwargs) -> OpenAICompatibleClient:
    options = {"max_retries": 2, "backoff_base": 0.01, "connect_timeout": 2.0, "read_timeout": 5.0, **kwargs}
    return OpenAICompatibleClient(server.base_url, server.model, **options)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- happy paths
def test_complete_returns_content_records_usage_and_sends_the_protocol(llm):
    llm.enqueue_reply(
        "Hỗ trợ ODA [1].", usage={"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    )
    client = make_client(llm)
    assert isinstance(client, ChatModel) and client.name == "scripted-model"

    assert client.complete(MESSAGES, max_tokens=64, temperature=0.0, stop=["\n\n"]) == "Hỗ trợ ODA [1]."
    assert client.last_usage == Usage(42, 7, 49)
    assert client.last_finish_reason == "stop"
    (request,) = llm.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body == {
        "model": "scripted-model",
        "messages": MESSAGES,
        "temperature": 0.0,
        "stream": False,
        "max_tokens": 64,
        "stop": ["\n\n"],
    }
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers  # no key configured -> no header


def test_stream_yields_the_deltas_in_order(llm):
    llm.enqueue_reply("Một hai ba bốn", chunks=["Một", " hai", " ba", " bốn"], finish_reason="length")
    client = make_client(llm)
    assert list(client.stream(MESSAGES, max_tokens=4)) == ["Một", " hai", " ba", " bốn"]
    assert client.last_finish_reason == "length"
    (request,) = llm.requests
    assert request.body["stream"] is True and request.body["max_tokens"] == 4
    assert "stop" not in request.body
    assert request.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize("fragment_bytes", [None, 1, 3])
def test_multi_chunk_vietnamese_is_reassembled_exactly(llm, fragment_bytes):
    nfd = unicodedata.normalize("NFD", "Việt Nam")  # combining marks must survive untouched too
    text = VI_TEXT + " " + nfd
    llm.enqueue_reply(text, chunks=len(text), fragment_bytes=fragment_bytes)  # one character per delta
    llm.enqueue_reply(text)
    client = make_client(llm)
    pieces = list(client.stream(MESSAGES))
    assert len(pieces) == len(text)
    assert "".join(pieces) == text
    assert client.complete(MESSAGES) == text


def test_stream_ends_cleanly_when_the_consumer_stops_early(llm):
    llm.enqueue_reply("a b c d e f")
    llm.enqueue_reply("again")
    client = make_client(llm)
    stream = client.stream(MESSAGES)
    assert next(stream) == "a "
    stream.close()
    assert client.complete(MESSAGES) == "again"  # the client is still usable


def test_from_settings_uses_the_llm_settings_and_tolerates_a_trailing_slash(llm, tmp_path):
    settings = make_settings(
        tmp_path, llm_base_url=llm.base_url + "/", llm_model="gemma", llm_api_key=KEY, llm_max_retries=0
    )
    client = OpenAICompatibleClient.from_settings(settings)
    llm.enqueue_status(503)
    with pytest.raises(LLMHTTPError):
        client.complete(MESSAGES)  # max_retries=0: one request only
    llm.enqueue_reply("ok")
    assert client.complete(MESSAGES) == "ok"
    assert [r.path for r in llm.requests] == ["/v1/chat/completions"] * 2
    assert llm.requests[-1].body["model"] == "gemma"
    assert llm.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_environment_proxies_are_ignored(llm, monkeypatch):
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    llm.enqueue_reply("direct")
    assert make_client(llm, max_retries=0).complete(MESSAGES) == "direct"


def test_no_base_url_is_a_clear_error(tmp_path):
    with pytest.raises(LLMNotConfigured) as info:
        OpenAICompatibleClient.from_settings(make_settings(tmp_path))
    assert "RAG_LLM_BASE_URL" in info.value.message("vi") and "RAG_LLM_BASE_URL" in info.value.message("en")
    with pytest.raises(LLMNotConfigured):
        OpenAICompatibleClient("localhost:8080/v1", "m")


# --------------------------------------------------------------------------------------------- retries
@pytest.mark.parametrize("streaming", [False, True])
def test_429_then_success_honours_retry_after(llm, streaming):
    llm.enqueue_status(429, retry_after=0.4)
    llm.enqueue_reply("Xin chào", chunks=2)
    client = make_client(llm, backoff_base=0.001)
    t = time.monotonic()
    out = "".join(client.stream(MESSAGES)) if streaming else client.complete(MESSAGES)
    elapsed = time.monotonic() - t
    assert out == "Xin chào"
    assert len(llm.requests) == 2 and llm.pending == 0
    assert elapsed >= 0.4  # waited as told, not the 1 ms backoff
    assert llm.requests[0].body == llm.requests[1].body


def test_retry_after_is_capped(llm):
    llm.enqueue_status(429, retry_after=3600)
    llm.enqueue_reply("ok")
    client = make_client(llm, max_backoff=0.05)
    t = time.monotonic()
    assert client.complete(MESSAGES) == "ok"
    assert time.monotonic() - t < 3


def test_retry_after_as_http_date(llm):
    llm.enqueue_status(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")  # in the past -> retry at once
    llm.enqueue_reply("ok")
    client = make_client(llm, backoff_base=5.0, max_backoff=30.0)
    t = time.monotonic()
    assert client.complete(MESSAGES) == "ok"
    assert time.monotonic() - t < 3  # the date, not the 5 s backoff, decided


@pytest.mark.parametrize("streaming", [False, True])
def test_500_exhausts_retries_with_exponential_backoff(llm, streaming):
    for _ in range(4):
        llm.enqueue_status(500)
    client = make_client(llm, max_retries=2, backoff_base=0.1)
    t = time.monotonic()
    with pytest.raises(LLMHTTPError) as info:
        "".join(client.stream(MESSAGES)) if streaming else client.complete(MESSAGES)
    assert time.monotonic() - t >= 0.1 + 0.2
    assert info.value.status_code == 500
    assert "500" in info.value.message("en") and "500" in info.value.message("vi")
    assert len(llm.requests) == 3 and llm.pending == 1  # 1 try + 2 retries; the 4th never asked for


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_4xx_is_not_retried(llm, status):
    llm.enqueue_status(status, message="bad request body")
    llm.enqueue_reply("never sent")
    with pytest.raises(LLMHTTPError) as info:
        make_client(llm).complete(MESSAGES)
    assert info.value.status_code == status
    assert "bad request body" in info.value.detail
    assert len(llm.requests) == 1 and llm.pending == 1


def test_connection_refused_is_unreachable_after_retries():
    port = closed_port()
    client = OpenAICompatibleClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_base=0.05)
    t = time.monotonic()
    with pytest.raises(LLMUnreachable) as info:
        list(client.stream(MESSAGES))
    assert time.monotonic() - t >= 0.05 + 0.1  # it did back off and retry
    with pytest.raises(LLMUnreachable):
        client.complete(MESSAGES)
    assert info.value.message("vi") != info.value.message("en")
    assert isinstance(info.value, LLMError)


def test_unknown_host_is_unreachable():
    client = OpenAICompatibleClient("http://no-such-host.invalid/v1", "m", max_retries=0)
    with pytest.raises(LLMUnreachable):
        client.complete(MESSAGES)


# --------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("streaming", [False, True])
def test_slow_first_token_beyond_read_timeout_is_a_timeout(llm, streaming):
    llm.enqueue_slow_first_token(3.0)
    client = make_client(llm, read_timeout=0.3)
    t = time.monotonic()
    with pytest.raises(LLMTimeout):
        "".join(client.stream(MESSAGES)) if streaming else client.complete(MESSAGES)
    assert time.monotonic() - t < 2.5
    assert len(llm.requests) == 1  # a slow model is not asked again


def test_slow_first_token_within_read_timeout_is_fine(llm):
    llm.enqueue_slow_first_token(0.3, text="Chậm mà chắc.")
    assert "".join(make_client(llm, read_timeout=3.0).stream(MESSAGES)) == "Chậm mà chắc."


@pytest.mark.parametrize("abort", [True, False])
def test_cut_stream_yields_the_partial_tokens_then_raises(llm, abort):
    llm.enqueue_cut_stream("Nhật Bản đã hỗ trợ", chunks=["Nhật Bản", " đã", " hỗ trợ"], abort=abort)
    llm.enqueue_reply("not a retry")
    client = make_client(llm)
    received = []
    with pytest.raises(LLMStreamInterrupted):
        for piece in client.stream(MESSAGES):
            received.append(piece)
    assert received == ["Nhật Bản", " đã", " hỗ trợ"]
    assert len(llm.requests) == 1 and llm.pending == 1  # tokens were shown: never silently restarted
    assert client.last_finish_reason is None


def test_cut_non_streaming_body_is_interrupted(llm):
    llm.enqueue_cut_stream("Một câu trả lời dài bị cắt ngang ở giữa")
    with pytest.raises(LLMStreamInterrupted):
        make_client(llm).complete(MESSAGES)


@pytest.mark.parametrize("streaming", [False, True])
def test_garbage_is_malformed(llm, streaming):
    llm.enqueue_garbage()
    with pytest.raises(LLMMalformedResponse) as info:
        "".join(make_client(llm).stream(MESSAGES)) if streaming else make_client(llm).complete(MESSAGES)
    assert info.value.message("vi") and info.value.message("en")


@pytest.mark.parametrize("streaming", [False, True])
def test_401_is_an_auth_error_and_not_retried(llm, streaming):
    llm.enqueue_auth_error()
    llm.enqueue_reply("never sent")
    client = make_client(llm, api_key=KEY)
    with pytest.raises(LLMAuthError) as info:
        "".join(client.stream(MESSAGES)) if streaming else client.complete(MESSAGES)
    assert "RAG_LLM_API_KEY" in info.value.message("en")
    assert len(llm.requests) == 1 and llm.pending == 1


# --------------------------------------------------------------------------------------------- the API key
def test_api_key_is_sent_but_never_shown(llm, caplog):
    caplog.set_level(logging.DEBUG)  # includes httpx/httpcore debug output
    client = make_client(llm, api_key=KEY)
    llm.enqueue_status(429, retry_after=0)
    llm.enqueue_auth_error()  # the server echoes the bearer token in its error message
    with pytest.raises(LLMAuthError) as auth:
        client.complete(MESSAGES)
    for _ in range(3):
        llm.enqueue_status(500, message=f"upstream rejected key {KEY}")
    with pytest.raises(LLMHTTPError) as http:
        list(client.stream(MESSAGES))

    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in llm.requests)
    shown = [
        str(auth.value),
        repr(auth.value),
        auth.value.detail,
        "".join(traceback.format_exception(auth.value)),
        str(http.value),
        repr(http.value),
        "".join(traceback.format_exception(http.value)),
        repr(client),
        str(client),
        caplog.text,
    ]
    for text in shown:
        assert KEY not in text
    # the server did echo the key; it was scrubbed, not the whole detail dropped
    assert "Incorrect API key provided: ***" in auth.value.detail
    assert "upstream rejected key ***" in http.value.detail
    assert "retry 1/2" in caplog.text  # the retry was logged (without the key)
