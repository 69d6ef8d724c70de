"""The Documents (admin) tab in a real browser: upload, list, answer from the new document, delete; and
the tab disabled without RAG_ADMIN_TOKEN. Also the bind warnings of rag.server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from rag.server import is_loopback
from tests.servers import free_port
from tests.test_service import NEW_DOC, QUESTION
from tests.test_ui import CHROMIUM, CHROMIUM_ARGS

TOKEN = "admin-tab-token-123"


def _serve(service):
    from rag.ui import build_ui

    demo = build_ui(service)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture
def admin_service(writable_service):
    writable_service.settings = writable_service.settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    return writable_service


@pytest.mark.slow
def test_upload_in_the_documents_tab_then_the_chat_answers_from_it(admin_service, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required at /usr/bin/chromium (apt-get install chromium)")
    upload = tmp_path / "kon-tum.md"
    upload.write_text(NEW_DOC, encoding="utf-8")
    demo, url = _serve(admin_service)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Tài liệu / Documents").click()
            table = page.locator("#admin-documents")
            sync_api.expect(table).to_contain_text("bo-truong-dung-lam-viec-vjoin-2023", timeout=60_000)  # seed documents are listed

            # Wrong token: refused with one sentence, nothing added.
            page.locator("#admin-token input").fill("wrong")
            page.locator("#admin-files input[type=file]").set_input_files(str(upload))
            page.locator("#admin-upload").click()
            sync_api.expect(page.locator("#admin-status")).to_contain_text("Mã quản trị không đúng", timeout=60_000)
            assert len(admin_service.documents()) == 5

            page.locator("#admin-token input").fill(TOKEN)
            page.locator("#admin-upload").click()
            sync_api.expect(page.locator("#admin-status")).to_contain_text("1 added", timeout=120_000)
            sync_api.expect(table).to_contain_text("Kon Tum", timeout=30_000)
            sync_api.expect(table).to_contain_text("Báo Kon Tum")

            page.get_by_role("tab", name="Hỏi đáp / Q&A").click()
            page.locator("#question textarea").fill(QUESTION)
            page.locator("#question textarea").press("Enter")
            bot = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
            sync_api.expect(bot).to_contain_text("1.250", timeout=90_000)
            browser.close()
    finally:
        demo.close()
    assert (admin_service.settings.uploads_path / "kon-tum.md").exists()


@pytest.mark.slow
def test_documents_tab_is_disabled_without_an_admin_token(service):
    sync_api = pytest.importorskip("playwright.sync_api")
    assert not service.settings.admin_token.get_secret_value()
    demo, url = _serve(service)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Tài liệu / Documents").click()
            sync_api.expect(page.locator("#admin-disabled")).to_contain_text("RAG_ADMIN_TOKEN", timeout=60_000)
            assert page.locator("#admin-upload").count() == 0
            browser.close()
    finally:
        demo.close()


def test_binding_beyond_loopback_without_tokens_warns(tmp_path, caplog, monkeypatch):
    import uvicorn

    from rag import server
    from tests.conftest import make_settings

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    ran = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(kw))
    monkeypatch.setattr(server, "create_app", lambda service: object())
    monkeypatch.setattr(server.Service, "start", lambda self, **kw: None)
    with caplog.at_level(logging.INFO, logger="rag.server"):
        server.serve(make_settings(tmp_path / "h", host="0.0.0.0", api_keys="secret-key-1"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("without RAG_ADMIN_TOKEN" in w for w in warnings)
    assert not any("RAG_API_KEYS" in w for w in warnings)  # keys are set: no warning about an open API
    assert "secret-key-1" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rag.server"):
        server.serve(make_settings(tmp_path / "h", host="127.0.0.1"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "this machine" in caplog.text
    assert [kw["host"] for kw in ran] == ["0.0.0.0", "127.0.0.1"]


def test_module_has_no_path_leaks():
    # the Documents tab never shows server paths to the browser
    assert "path" not in Path(__file__).resolve().parent.parent.joinpath("rag", "ui_admin.py").read_text().split(
        "HEADERS =")[1].split("\n")[0].lower()
