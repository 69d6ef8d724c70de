"""The Gradio app over real HTTP on loopback: the gradio_client API and a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port

QUESTION_VI = "Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?"
QUESTION_EN = "How many Vietnamese IT engineers work in Japan?"
ENGINEERS_TITLE = "Thiết lập nền tảng chung để kết nối các nhà khoa học Việt Nam tại Nhật Bản"
REFUSAL_EN = "I couldn't find this in the documents."
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def app_url(service):
    """The app of `rag.ui.build_ui` served on a free loopback port for the whole module."""
    from rag.ui import build_ui

    demo = build_ui(service)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def message_text(message: dict[str, Any]) -> str:
    """What a reader sees of a chat message in either Gradio format (a string, or a list of {type: text}
    parts): the Markdown source without its backslash escapes (rag.render escapes document text)."""
    content = message["content"]
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, str):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return re.sub(r"\\(.)", r"\1", content)


def chat(client, message: str, history: list | None = None) -> tuple[str, list[dict[str, Any]]]:
    box, new_history = client.predict(message, history or [], api_name="/chat")
    return box, new_history


# ---------------------------------------------------------------- gradio_client API


def test_ask_api_returns_answer_json_with_citations(client):
    result = client.predict(QUESTION_VI, api_name="/ask")
    assert isinstance(result, dict)
    assert result["question"] == QUESTION_VI
    assert result["refused"] is False and result["backend"] == "extractive"
    assert "5.000" in result["answer"]
    cites = result["citations"]
    assert [c["n"] for c in cites] == list(range(1, len(cites) + 1))
    assert any(c["title"] == ENGINEERS_TITLE and "5.000" in c["quote"] for c in cites)
    assert all(c["quote"] in c["text"] for c in cites)
    assert result["retrieved"]


def test_ask_api_error_is_a_sentence(client):
    result = client.predict("   ", api_name="/ask")
    assert result["error"] in ("Vui lòng nhập câu hỏi.", "Please type a question.")
    assert "answer" not in result


def test_chat_reply_cites_sources(client):
    box, history = chat(client, QUESTION_VI)
    assert box == ""
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert message_text(history[0]) == QUESTION_VI
    reply = message_text(history[1])
    assert "5.000" in reply
    assert "[1]" in reply
    assert "Nguồn" in reply
    assert ENGINEERS_TITLE in reply
    assert "chinhphu.vn" in reply and "01/06/2025" in reply  # the date as Vietnamese readers write it


def test_chat_empty_message_gets_one_clear_sentence(client):
    _, history = chat(client, "")
    reply = message_text(history[-1])
    assert history[-1]["role"] == "assistant"
    assert reply == "Vui lòng nhập câu hỏi. / Please type a question."
    assert "Traceback" not in reply


def test_chat_english_question_gets_english_frame(client):
    _, history = chat(client, QUESTION_EN)
    reply = message_text(history[-1])
    assert reply.startswith("According to the documents"), reply
    assert "5.000" in reply and "[1]" in reply
    assert "Sources" in reply and ENGINEERS_TITLE in reply
    assert "Theo các tài liệu" not in reply and "Nguồn" not in reply
    assert "extractive (offline)" in reply


def test_chat_keeps_history(client):
    _, first = chat(client, QUESTION_VI)
    _, second = chat(client, "What is the population of Osaka?", first)
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]
    assert message_text(second[0]) == QUESTION_VI
    assert "5.000" in message_text(second[1])
    assert message_text(second[2]) == "What is the population of Osaka?"
    assert message_text(second[3]).startswith(REFUSAL_EN)  # plain text: no HTML entities (I couldn&#x27;t)
    assert not any("&#" in message_text(m) or "&quot;" in message_text(m) for m in second)


# ---------------------------------------------------------------- real browser


@pytest.mark.slow
def test_browser_conversation_keeps_history(browser, app_url, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        page.goto(app_url)
        notices = page.locator("#notices")
        expect(notices).to_be_visible(timeout=30_000)
        expect(notices).to_contain_text("offline extractive mode", timeout=30_000)
        expect(notices).to_contain_text("chế độ offline")

        box = page.locator("#question textarea")
        chat_log = page.locator("#chat")
        bots = chat_log.get_by_test_id("bot")
        users = chat_log.get_by_test_id("user")

        box.fill(QUESTION_VI)
        box.press("Enter")
        expect(bots).to_have_count(1, timeout=90_000)
        expect(bots.nth(0)).to_contain_text("5.000", timeout=90_000)
        expect(bots.nth(0)).to_contain_text("Nguồn")
        expect(bots.nth(0)).to_contain_text(ENGINEERS_TITLE)
        expect(box).to_have_value("")

        box.fill("What is the population of Osaka?")
        box.press("Enter")
        expect(bots).to_have_count(2, timeout=90_000)
        expect(bots.nth(1)).to_contain_text(REFUSAL_EN, timeout=90_000)

        expect(users).to_have_count(2)
        expect(users.nth(0)).to_contain_text(QUESTION_VI)
        expect(users.nth(1)).to_contain_text("What is the population of Osaka?")
        expect(bots.nth(0)).to_contain_text("5.000")  # the first exchange is still shown
        expect(bots.nth(0)).to_be_visible()

        shot = tmp_path / "conversation.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
