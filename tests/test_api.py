"""The HTTP API through real clients: the official `openai` package and httpx against a real uvicorn server
(rag.server.create_app: API + Gradio UI in one app) on a loopback port, over the seed index."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import openai
import pytest
from pydantic import SecretStr

from rag.limits import Admission, Busy, RateLimited, RateLimiter
from tests.servers import uvicorn_in_thread

QUESTION_VI = "EMB-AI là gì và được ra mắt khi nào?"
QUESTION_EN = "How many Vietnamese IT engineers work in Japan?"
OFF_TOPIC_EN = "What is the population of Osaka?"
API_KEYS = ("key-alpha-3f9c", "key-beta-77d1")
ADMIN_TOKEN = "admin-tok-9b2e41"

pytestmark = pytest.mark.slow


def service_with(service, **settings):
    """A Service over the same loaded pipeline with other settings (keys, limits)."""
    from rag.service import Service

    pipeline = service.pipeline
    svc = Service(service.settings.model_copy(update=settings), pipeline_factory=lambda _s: pipeline)
    svc.start()
    return svc


def llm_service(pipeline, llm, **settings):
    """A Service whose pipeline answers with the scripted OpenAI-compatible server `llm`."""
    from rag.chain import Pipeline
    from rag.llm import OpenAICompatibleClient
    from rag.service import Service

    s = pipeline.settings.model_copy(update={"llm_base_url": llm.base_url, "llm_model": llm.model, **settings})
    p = Pipeline(s, pipeline.loaded, pipeline.index, pipeline.lexicon,
                 OpenAICompatibleClient(llm.base_url, llm.model, max_retries=0), reranker=pipeline.reranker)
    svc = Service(s, pipeline_factory=lambda _s: p)
    svc.start()
    return svc


def app_of(service):
    from rag.server import create_app

    return create_app(service)


@pytest.fixture(scope="module")
def open_url(service):
    """The app with no keys and no admin token (the out-of-the-box configuration, except that the per-client
    rate limit is raised: every request of this module comes from 127.0.0.1)."""
    with uvicorn_in_thread(app_of(service_with(service, api_rate_limit=10_000))) as url:
        yield url


@pytest.fixture(scope="module")
def secured_service(service):
    return service_with(service, api_keys=SecretStr(",".join(API_KEYS)), admin_token=SecretStr(ADMIN_TOKEN))


@pytest.fixture(scope="module")
def secured_url(secured_service):
    with uvicorn_in_thread(app_of(secured_service), log_level="info") as url:
        yield url


def oai(url: str, key: str = "unused") -> openai.OpenAI:
    # max_retries=0: a 429 or 5xx must surface in the test, not be retried away by the client.
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def sse_events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


# ---------------------------------------------------------------------------------------- OpenAI client


def test_models_lists_the_one_model(open_url):
    models = oai(open_url).models.list()
    assert [m.id for m in models.data] == ["vj-rag"]
    assert oai(open_url).models.retrieve("vj-rag").id == "vj-rag"
    with pytest.raises(openai.NotFoundError):
        oai(open_url).models.retrieve("gpt-4o")


def test_chat_completion_is_the_service_answer_with_citations(open_url, service):
    resp = oai(open_url).chat.completions.create(
        model="any-name-the-client-likes", messages=[{"role": "user", "content": QUESTION_VI}]
    )
    expected = service.ask(QUESTION_VI)
    assert resp.object == "chat.completion" and resp.model == "any-name-the-client-likes"
    [choice] = resp.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert "[1]" in choice.message.content and "EMB-AI" in choice.message.content
    extra = resp.model_extra
    assert extra["refused"] is False and extra["backend"] == "extractive" and extra["language"] == "vi"
    citations = extra["citations"]
    assert [c["chunk_id"] for c in citations] == [c.chunk.chunk_id for c in expected.citations]
    for c in citations:
        assert {"n", "title", "source", "date", "url", "quote", "chunk_id", "doc_id"} <= set(c)
        chunk = service.pipeline.index.chunks[c["chunk_id"]]
        assert c["doc_id"] == chunk.doc_id and c["title"] == chunk.title and c["quote"] in chunk.text
        assert f"[{c['n']}]" in choice.message.content
    assert resp.usage.completion_tokens > 0


def test_chat_streaming_gives_the_same_answer_and_ends_with_citations(open_url):
    client = oai(open_url)
    plain = client.chat.completions.create(model="vj-rag", messages=[{"role": "user", "content": QUESTION_EN}])
    chunks = list(client.chat.completions.create(
        model="vj-rag", messages=[{"role": "user", "content": QUESTION_EN}], stream=True,
        stream_options={"include_usage": True},
    ))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed in pieces
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert final.model_extra["citations"] == plain.model_extra["citations"]
    assert final.model_extra["refused"] is False and final.model_extra["language"] == "en"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_raw_stream_is_sse_ending_in_done(open_url):
    body = {"model": "vj-rag", "stream": True, "messages": [{"role": "user", "content": QUESTION_VI}]}
    with httpx.stream("POST", f"{open_url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode("utf-8")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    objs = [json.loads(e) for e in events[:-1]]
    assert objs[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(o["object"] == "chat.completion.chunk" for o in objs)
    assert len({o["id"] for o in objs}) == 1
    assert objs[-1]["choices"][0]["finish_reason"] == "stop" and objs[-1]["citations"]


def test_earlier_turns_are_the_conversation(open_url, service):
    from rag.chain import Turn

    first, follow_up = "Văn phòng đại diện KH&CN tại Osaka có vai trò gì?", "Còn Tổng Lãnh sự quán thì sao?"
    previous = service.ask(first).text
    resp = oai(open_url).chat.completions.create(model="vj-rag", messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": first},
        {"role": "assistant", "content": previous},
        {"role": "user", "content": [{"type": "text", "text": follow_up}]},
    ])
    with_history = service.ask(follow_up, history=[Turn(first, previous)])
    without = service.ask(follow_up)
    got = [c["chunk_id"] for c in resp.model_extra["citations"]]
    assert resp.choices[0].message.content == with_history.text
    assert got == [c.chunk.chunk_id for c in with_history.citations]
    assert (with_history.text, [h.chunk.chunk_id for h in with_history.hits]) != (
        without.text, [h.chunk.chunk_id for h in without.hits])  # the history really changes the answer


def test_decomposed_and_toneless_vietnamese_work(open_url):
    import unicodedata

    client = oai(open_url)

    def ask(text):
        return client.chat.completions.create(model="vj-rag", messages=[{"role": "user", "content": text}])

    composed = ask(QUESTION_VI)
    decomposed = ask(unicodedata.normalize("NFD", QUESTION_VI))
    assert decomposed.choices[0].message.content == composed.choices[0].message.content
    toneless = ask("EMB-AI la gi va duoc ra mat khi nao?")
    assert toneless.model_extra["refused"] is False and "EMB-AI" in toneless.choices[0].message.content


def test_unanswerable_question_is_refused_without_citations(open_url):
    resp = oai(open_url).chat.completions.create(model="vj-rag", messages=[{"role": "user", "content": OFF_TOPIC_EN}])
    assert resp.model_extra["refused"] is True and resp.model_extra["citations"] == []
    assert resp.choices[0].message.content


@pytest.mark.parametrize(
    ("content", "headers", "sentence"),
    [
        ("", {}, "Please type a question."),
        ("", {"Accept-Language": "vi-VN,vi;q=0.9"}, "Vui lòng nhập câu hỏi."),
        ("What " * 3000 + "is EMB-AI?", {}, "The question is too long"),
        ("EMB-AI được ra mắt khi nào? " * 800, {}, "Câu hỏi quá dài"),
    ],
)
def test_unusable_question_is_a_400_in_openai_error_shape(open_url, content, headers, sentence):
    client = oai(open_url).with_options(default_headers=headers)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="vj-rag", messages=[{"role": "user", "content": content}])
    assert err.value.status_code == 400
    body = err.value.body
    assert body["message"].startswith(sentence) and body["type"] == "invalid_request_error"
    assert "Traceback" not in json.dumps(body)


def test_malformed_chat_requests_are_400_with_one_sentence(open_url):
    url = f"{open_url}/v1/chat/completions"
    last_assistant = {"messages": [{"role": "user", "content": QUESTION_VI}, {"role": "assistant", "content": "…"}]}
    for body, fragment in [
        ({"model": "vj-rag"}, "messages"),
        (last_assistant, "Tin nhắn cuối phải là câu hỏi của người dùng."),  # the question's language
        ({"messages": [{"role": "user", "content": QUESTION_VI}], "filters": {"date_from": "2025-13-40"}},
         "Ngày phải có dạng"),
    ]:
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert fragment in err["message"] and err["type"] == "invalid_request_error"
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"]


def test_oversized_bodies_are_413_before_they_are_read(open_url):
    url = f"{open_url}/v1/chat/completions"
    big = {"messages": [{"role": "user", "content": "x"}], "padding": "a" * (2 * 1024 * 1024)}
    r = httpx.post(url, json=big, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text
    assert r.json()["error"]["message"] == "The request is too large (at most 1 MB); nothing was changed."

    def chunked():  # no Content-Length: the limit must hold while the body streams in
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}]}'

    r = httpx.post(url, content=chunked(), headers={"content-type": "application/json", "accept-language": "vi"},
                   timeout=60)
    assert r.status_code == 413 and r.json()["error"]["message"].startswith("Yêu cầu quá lớn"), r.text
    ok = httpx.post(url, json={"messages": [{"role": "user", "content": QUESTION_VI}]}, timeout=60)
    assert ok.status_code == 200  # the server is fine afterwards


def test_history_is_capped_to_the_recent_turns():
    from rag.api import MAX_HISTORY_TURNS, MAX_TURN_CHARS, ChatMessage, split_messages

    messages = []
    for i in range(30):
        messages += [ChatMessage(role="user", content=f"q{i} " + "x" * 10_000),
                     ChatMessage(role="assistant", content=f"a{i}")]
    question, turns = split_messages([*messages, ChatMessage(role="user", content="Còn ở Osaka thì sao?")])
    assert question == "Còn ở Osaka thì sao?"
    assert len(turns) == MAX_HISTORY_TURNS and turns[-1].answer == "a29" and turns[0].question.startswith("q22 ")
    assert all(len(t.question) <= MAX_TURN_CHARS for t in turns)


def test_chat_filters_and_k_extension(open_url, service):
    source = sorted({c.source for c in service.pipeline.index.chunks.values() if c.source})[0]
    resp = oai(open_url).chat.completions.create(
        model="vj-rag", messages=[{"role": "user", "content": QUESTION_VI}],
        extra_body={"filters": {"sources": [source]}, "k": 3},
    )
    for c in resp.model_extra["citations"]:
        assert c["source"] == source


def test_stream_sends_only_the_validated_answer_never_withdrawn_llm_text(pipeline):
    """An LLM reply without a valid citation ends in the quoted answer: the stream must not have sent the
    rejected text first (SSE cannot take it back)."""
    from tests.scripted_llm import ScriptedLLM

    rejected = "Theo tôi EMB-AI là một loại trà xanh nổi tiếng của Kyoto."
    with ScriptedLLM() as llm:
        svc = llm_service(pipeline, llm)
        with uvicorn_in_thread(app_of(svc)) as url:
            llm.enqueue_reply(rejected, chunks=4)
            chunks = list(oai(url).chat.completions.create(
                model="vj-rag", messages=[{"role": "user", "content": QUESTION_VI}], stream=True))
            assert llm.chat_requests, "the LLM was not asked"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = chunks[-1].model_extra
    assert "trà xanh" not in text
    assert final["backend"] == "extractive" and final["notice"] and final["citations"]
    assert text == pipeline.ask(QUESTION_VI).text


# ---------------------------------------------------------------------------------------- retrieve, connect, health


def test_retrieve_returns_hits_and_respects_filters(open_url, service):
    r = httpx.post(f"{open_url}/v1/retrieve", json={"question": QUESTION_VI, "k": 4}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["question"] == QUESTION_VI and out["language"] == "vi"
    hits = out["retrieved"]
    assert 0 < len(hits) <= 4
    assert [h["chunk_id"] for h in hits] == [h.chunk.chunk_id for h in service.retrieve(QUESTION_VI, k=4).hits]
    source = hits[-1]["source"]
    r = httpx.post(f"{open_url}/v1/retrieve", json={"question": QUESTION_VI, "filters": {"sources": [source]}},
                   timeout=60)
    assert r.status_code == 200 and {h["source"] for h in r.json()["retrieved"]} == {source}
    r = httpx.post(f"{open_url}/v1/retrieve", json={"question": "?!"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["message"] == "Câu hỏi không có từ nào để tìm kiếm."


def test_connect_answers_with_cited_sources(open_url):
    r = httpx.post(f"{open_url}/v1/connect", json={"question": "Doanh nghiệp ở Osaka liên hệ cơ quan nào?"},
                   timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["sources"] and all(s["chunk_id"] and s["quote"] for s in out["sources"])
    r = httpx.post(f"{open_url}/v1/connect", json={}, headers={"Accept-Language": "en"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == "Give a question, a province or a sector."


def test_health_and_openapi_docs(open_url, service):
    health = httpx.get(f"{open_url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["chunks"] == len(service.pipeline.index.chunks) > 0
    assert health["backend"] == "extractive" and health["version"]
    docs = httpx.get(f"{open_url}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = httpx.get(f"{open_url}/openapi.json", timeout=10).json()["paths"]
    for p in ("/v1/chat/completions", "/v1/models", "/v1/retrieve", "/v1/connect", "/v1/documents",
              "/v1/documents/{doc_id}/reingest", "/v1/documents/{doc_id}", "/health"):
        assert p in paths
    assert "citations" in json.dumps(httpx.get(f"{open_url}/openapi.json", timeout=10).json()["components"])


def test_ui_is_served_beside_the_api(open_url):
    r = httpx.get(f"{open_url}/", timeout=30)
    assert r.status_code == 200 and "gradio" in r.text.lower()


# ---------------------------------------------------------------------------------------- access control


def test_api_keys_are_required_when_configured(secured_url):
    with pytest.raises(openai.AuthenticationError) as err:
        oai(secured_url, "wrong-key").chat.completions.create(
            model="vj-rag", messages=[{"role": "user", "content": QUESTION_VI}])
    assert err.value.status_code == 401 and "Bearer" in err.value.body["message"]
    r = httpx.post(f"{secured_url}/v1/retrieve", json={"question": QUESTION_EN}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{secured_url}/v1/models", timeout=10).status_code == 401
    for key in API_KEYS:
        resp = oai(secured_url, key).chat.completions.create(
            model="vj-rag", messages=[{"role": "user", "content": QUESTION_VI}])
        assert resp.model_extra["citations"]
    assert httpx.get(f"{secured_url}/health", timeout=10).status_code == 200  # health stays open for probes


def test_documents_are_disabled_without_an_admin_token(open_url):
    for method, path in [("GET", "/v1/documents"), ("DELETE", "/v1/documents/x"),
                         ("POST", "/v1/documents/x/reingest")]:
        r = httpx.request(method, f"{open_url}{path}", headers={"Authorization": "Bearer anything"}, timeout=30)
        assert r.status_code == 403, (path, r.text)
        assert "RAG_ADMIN_TOKEN" in r.json()["error"]["message"]
    r = httpx.post(f"{open_url}/v1/documents", files={"files": ("a.md", b"# A\n\nText.")}, timeout=30)
    assert r.status_code == 403
    r = httpx.get(f"{open_url}/v1/documents", headers={"Accept-Language": "vi"}, timeout=30)
    assert r.json()["error"]["message"].startswith("Chức năng quản lý tài liệu đang tắt")


def test_documents_need_the_admin_token(secured_url, service):
    url = f"{secured_url}/v1/documents"
    assert httpx.get(url, timeout=30).status_code == 401
    assert httpx.get(url, headers={"X-Admin-Token": "nope"}, timeout=30).status_code == 401
    # An API key is not an admin token.
    assert httpx.get(url, headers={"Authorization": f"Bearer {API_KEYS[0]}"}, timeout=30).status_code == 401
    for headers in ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"X-Admin-Token": ADMIN_TOKEN}):
        r = httpx.get(url, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        docs = r.json()
        assert docs == [d.model_dump() for d in service.documents()]
        assert len(docs) == 5 and all(d["chunks"] > 0 and d["title"] for d in docs)


def test_keys_and_tokens_never_reach_the_logs(secured_url, caplog):
    caplog.set_level(logging.DEBUG)
    # uvicorn's loggers do not propagate to the root logger, so listen to them directly as well.
    uv = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    for lg in uv:
        lg.addHandler(caplog.handler)
    secret_wrong = "sk-wrong-5e1d9a0c"
    try:
        oai(secured_url, API_KEYS[0]).chat.completions.create(
            model="vj-rag", messages=[{"role": "user", "content": QUESTION_VI}])
        list(oai(secured_url, API_KEYS[1]).chat.completions.create(
            model="vj-rag", messages=[{"role": "user", "content": QUESTION_EN}], stream=True))
        with pytest.raises(openai.AuthenticationError):
            oai(secured_url, secret_wrong).chat.completions.create(
                model="vj-rag", messages=[{"role": "user", "content": QUESTION_VI}])
        with pytest.raises(openai.BadRequestError):
            oai(secured_url, API_KEYS[0]).chat.completions.create(
                model="vj-rag", messages=[{"role": "user", "content": ""}])
        httpx.get(f"{secured_url}/v1/documents", headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=30)
        httpx.get(f"{secured_url}/v1/documents", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}, timeout=30)
    finally:
        for lg in uv:
            lg.removeHandler(caplog.handler)
    logged = caplog.text
    assert "/v1/chat/completions" in logged  # the access log was captured: the check below means something
    for secret in (*API_KEYS, ADMIN_TOKEN, secret_wrong):
        assert secret not in logged, f"{secret} leaked into the logs"


# ---------------------------------------------------------------------------------------- documents (writable)


@pytest.fixture
def admin(writable_service):
    writable_service.settings = writable_service.settings.model_copy(
        update={"admin_token": SecretStr(ADMIN_TOKEN), "write_lock_wait": 0.3, "max_file_mb": 1.0})
    with uvicorn_in_thread(app_of(writable_service)) as url:
        yield httpx.Client(base_url=url, headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=120), url


NEW_DOC = (
    "---\ntitle: Hợp tác lượng tử Việt Nam – Nhật Bản\nsource: Báo Thử Nghiệm\ndate: 2026-11-20\n---\n"
    "Ngày 20/11/2026, Viện Quang tử Hà Nội và Đại học Tohoku ký thỏa thuận hợp tác nghiên cứu máy tính lượng tử "
    "mang tên QBRIDGE-26, với kinh phí 3 triệu USD trong ba năm.\n"
)
NEW_HTML = (
    "<html><head><title>Sendai semiconductor exchange</title></head><body><h1>Sendai semiconductor exchange</h1>"
    "<p>In November 2026 the city of Sendai hosted thirty Vietnamese engineers for the ZEPHYR-SEMI training "
    "programme on chip packaging.</p></body></html>"
)


def test_upload_list_reingest_delete_through_the_api(admin):
    client, url = admin
    r = client.post("/v1/documents", files=[("files", ("quantum.md", NEW_DOC.encode())),
                                             ("files", ("sendai.html", NEW_HTML.encode()))])
    assert r.status_code == 200, r.text
    report = r.json()
    assert len(report["added"]) == 2 and report["chunks_embedded"] >= 2 and report["summary"]
    docs = {d["doc_id"]: d for d in client.get("/v1/documents").json()}
    added = [d for d in docs.values() if d["doc_id"] in report["added"]]
    assert {d["title"] for d in added} == {"Hợp tác lượng tử Việt Nam – Nhật Bản", "Sendai semiconductor exchange"}
    assert all(d["chunks"] > 0 and d["added_at"] for d in added)
    quantum = next(d["doc_id"] for d in added if d["title"].startswith("Hợp tác lượng tử"))

    # The chat answers from the new document right away (same process, no restart).
    resp = oai(url).chat.completions.create(
        model="vj-rag", messages=[{"role": "user", "content": "QBRIDGE-26 có kinh phí bao nhiêu?"}])
    assert resp.model_extra["refused"] is False
    assert quantum in {c["doc_id"] for c in resp.model_extra["citations"]}

    r = client.post(f"/v1/documents/{quantum}/reingest")
    assert r.status_code == 200 and r.json()["updated"] == [quantum], r.text
    r = client.delete(f"/v1/documents/{quantum}")
    assert r.status_code == 200 and r.json()["removed"] == [quantum], r.text
    assert quantum not in {d["doc_id"] for d in client.get("/v1/documents").json()}
    for method, path in [("DELETE", f"/v1/documents/{quantum}"), ("POST", "/v1/documents/nope/reingest")]:
        r = client.request(method, path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "document_not_found"


@pytest.mark.parametrize(
    ("files", "sentence"),
    [
        ([("files", ("../escape.md", b"# x\n\ntext"))], "not a plain file name"),
        ([("files", ("run.exe", b"MZ\x90\x00"))], "unsupported file type"),
        ([("files", ("empty.md", b"   "))], "is empty"),
    ],
)
def test_bad_uploads_are_400_and_change_nothing(admin, files, sentence):
    client, _url = admin
    before = client.get("/v1/documents").json()
    r = client.post("/v1/documents", files=files)
    assert r.status_code == 400, r.text
    assert sentence in r.json()["error"]["message"]
    assert client.get("/v1/documents").json() == before


def test_too_many_files_in_one_upload_is_400(admin):
    client, _url = admin
    files = [("files", (f"n{i}.md", f"# Note {i}\n\nText {i}.".encode())) for i in range(21)]
    r = client.post("/v1/documents", files=files)
    assert r.status_code == 400 and "At most 20 files" in r.json()["error"]["message"]


def test_upload_without_files_is_400(admin):
    client, _url = admin
    r = client.post("/v1/documents", data={"nothing": "here"})
    assert r.status_code == 400 and "files" in r.json()["error"]["message"]


def test_upload_over_the_size_limit_is_refused(admin, writable_service):
    client, _url = admin
    limit = int(writable_service.settings.max_file_mb * 1024 * 1024)
    r = client.post("/v1/documents", files=[("files", ("big.txt", b"a " * (limit // 2 + 10)))])
    assert r.status_code == 400 and "larger than" in r.json()["error"]["message"]


def test_a_second_writer_gets_409_and_nothing_changes(admin, writable_service):
    from rag.lock import writer_lock

    client, _url = admin
    before = client.get("/v1/documents").json()
    with writer_lock(writable_service.settings.home, 0):  # as if `rag ingest` were running
        r = client.post("/v1/documents", files=[("files", ("quantum.md", NEW_DOC.encode()))])
    assert r.status_code == 409 and r.json()["error"]["code"] == "index_busy", r.text
    assert int(r.headers["retry-after"]) >= 1 and "Nothing was changed" in r.json()["error"]["message"]
    assert client.get("/v1/documents").json() == before
    r = client.post("/v1/documents", files=[("files", ("quantum.md", NEW_DOC.encode()))])
    assert r.status_code == 200 and len(r.json()["added"]) == 1  # free again: the same upload goes through


def test_while_models_load_questions_get_503_with_retry_after(pipeline):
    import threading

    from rag.service import Service

    release = threading.Event()

    def slow_factory(_settings):
        release.wait(60)
        return pipeline

    svc = Service(pipeline.settings, pipeline_factory=slow_factory)
    svc.start(background=True)
    try:
        with uvicorn_in_thread(app_of(svc)) as url:
            assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "warming_up"
            with pytest.raises(openai.APIStatusError) as err:
                oai(url).chat.completions.create(model="vj-rag", messages=[{"role": "user", "content": QUESTION_EN}])
            assert err.value.status_code == 503 and err.value.response.headers["retry-after"] == "5"
            assert err.value.body["message"].startswith("The assistant is warming up")
            release.set()
            assert svc.wait_ready(60)
            resp = oai(url).chat.completions.create(model="vj-rag", messages=[{"role": "user", "content": QUESTION_EN}])
            assert resp.choices[0].message.content
    finally:
        release.set()


# ---------------------------------------------------------------------------------------- load limits


def test_rate_limit_is_per_key_with_retry_after(service):
    svc = service_with(service, api_keys=SecretStr(",".join(API_KEYS)), api_rate_limit=2)
    with uvicorn_in_thread(app_of(svc)) as url:
        def retrieve(key):
            return httpx.post(f"{url}/v1/retrieve", json={"question": QUESTION_EN},
                              headers={"Authorization": f"Bearer {key}"}, timeout=60)

        assert [retrieve(API_KEYS[0]).status_code for _ in range(2)] == [200, 200]
        r = retrieve(API_KEYS[0])
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert "Too many requests" in r.json()["error"]["message"]
        with pytest.raises(openai.RateLimitError):
            oai(url, API_KEYS[0]).chat.completions.create(
                model="vj-rag", messages=[{"role": "user", "content": QUESTION_EN}])
        assert retrieve(API_KEYS[1]).status_code == 200  # another key has its own budget


def test_beyond_the_queue_clients_get_429_and_the_queued_ones_finish(service, pipeline):
    """concurrency 1 + queue 1: with a slow (scripted) LLM, the third concurrent request is refused at once."""
    from tests.scripted_llm import ScriptedLLM

    with ScriptedLLM() as llm:
        for _ in range(2):
            llm.enqueue_slow_first_token(2.0, text="EMB-AI là một nền tảng [1].")
        svc = llm_service(pipeline, llm, concurrency=1, max_queue=1)
        with uvicorn_in_thread(app_of(svc)) as url:
            async def run():
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    body = {"model": "vj-rag", "messages": [{"role": "user", "content": QUESTION_VI}]}
                    first = asyncio.create_task(client.post("/v1/chat/completions", json=body))
                    await asyncio.sleep(0.5)
                    second = asyncio.create_task(client.post("/v1/chat/completions", json=body))
                    await asyncio.sleep(0.5)
                    third = await client.post("/v1/chat/completions", json=body)
                    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
                    return await first, await second, third, streamed

            first, second, third, streamed = asyncio.run(run())
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
        assert third.json()["error"]["code"] == "server_busy"
        assert third.json()["error"]["message"].startswith("Hệ thống đang bận")  # the question's language
        assert streamed.status_code == 429  # refused before the stream starts, not inside it
        assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
        assert len(llm.chat_requests) == 2


def test_admission_refuses_beyond_the_queue_and_frees_slots():
    async def run():
        adm = Admission(concurrency=1, max_queue=1)
        entered = asyncio.Event()
        release = asyncio.Event()

        async def hold():
            async with adm.slot():
                entered.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await entered.wait()
        waiter = asyncio.create_task(hold())
        await asyncio.sleep(0)
        assert adm.in_flight == 2
        with pytest.raises(Busy) as busy:
            async with adm.slot():
                pass
        assert busy.value.retry_after >= 1 and adm.refused == 1
        release.set()
        await asyncio.gather(holder, waiter)
        assert adm.in_flight == 0
        async with adm.slot():  # room again
            assert adm.in_flight == 1

    asyncio.run(run())


def test_rate_limiter_refills_over_time_and_keys_are_independent():
    now = [0.0]
    limiter = RateLimiter(per_minute=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited) as err:
        limiter.check("a")
    assert err.value.retry_after == 20  # one request every 20 s at 3 a minute
    limiter.check("b")
    now[0] = 20.0
    limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")
    RateLimiter(per_minute=0).check("anyone")  # 0 turns it off


def test_rate_limiter_table_stays_bounded():
    now = [0.0]
    limiter = RateLimiter(per_minute=5, clock=lambda: now[0], max_keys=100)
    for i in range(1000):
        now[0] = i * 0.001
        limiter.check(f"k{i}")
    assert len(limiter._buckets) <= 100
