"""Hostile markup in documents and LLM answers, in a real browser (Debian Chromium via Playwright).

A document carrying `<img src=LOCAL_URL>`, `<script>`, a `javascript:` link and an `onerror` attribute
is ingested and quoted in the chat; then the scripted LLM answers with the same payloads. The page
must make no request to the tracking server (a loopback server counting its hits), run nothing, and
show the markup as literal text. The app is launched with `rag.ui.launch_options`, whose file-route
block list and upload cap are checked over HTTP too.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.scripted_llm import ScriptedLLM
from tests.servers import free_port

pytestmark = pytest.mark.slow


class Tracker:
    """A loopback HTTP server that counts every request it gets (the 'attacker's' pixel server)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        tracker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                tracker.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def payload(port: int, tag: str) -> str:
    return (
        f'<img src="http://127.0.0.1:{port}/{tag}.png"> <script>window.__pwned="{tag}-script"</script> '
        f'<a href="javascript:window.__pwned=\'{tag}-link\'">bấm vào đây</a> '
        f'<img src=x onerror="window.__pwned=\'{tag}-onerror\'"> '
        f"![pixel](http://127.0.0.1:{port}/{tag}-md.png)"
    )


@pytest.fixture(scope="module")
def tracker():
    t = Tracker()
    yield t
    t.close()


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory, tracker, loaded_embedder):
    from rag.chain import Pipeline
    from rag.index import Index
    from rag.lexicon import default_lexicon
    from rag.llm import OpenAICompatibleClient
    from rag.service import Service
    from rag.ui import build_ui, launch_options

    root = tmp_path_factory.mktemp("hostile")
    corpus, home = root / "corpus", root / "home"
    corpus.mkdir()
    (corpus / "hoa-sen.md").write_text(
        "---\ntitle: Dự án Hoa Sen Kanagawa\nsource: Thử nghiệm\ndate: 2025-05-05\n---\n"
        f"Dự án Hoa Sen Kanagawa {payload(tracker.port, 'doc')} tuyển 42 kỹ sư bán dẫn trong năm 2031.\n\n"
        "Dự án do hai trường đại học cùng điều phối.\n",
        encoding="utf-8",
    )
    (corpus / "khac.md").write_text("---\ntitle: Tin khác\n---\nHội thảo về nông nghiệp thông minh ở Cần Thơ.\n",
                                    encoding="utf-8")
    settings = make_settings(home, corpus_dir=corpus, max_file_mb=0.05)
    index = Index.open(settings, must_exist=False)
    index.sync([corpus], loaded_embedder.embedder)
    with ScriptedLLM() as llm:
        client = OpenAICompatibleClient(llm.base_url, llm.model, connect_timeout=1.0, read_timeout=10.0, max_retries=0)
        pipeline = Pipeline(settings, loaded_embedder, Index.open(settings), default_lexicon(), client)
        service = Service(settings, pipeline_factory=lambda _s: pipeline)
        service.start()
        demo = build_ui(service)
        port = free_port()
        options = {**launch_options(settings), "server_port": port, "prevent_thread_lock": True, "quiet": True}
        demo.queue().launch(**options)
        try:
            yield {"url": f"http://127.0.0.1:{port}/", "llm": llm, "home": home, "corpus": corpus, "demo": demo}
        finally:
            demo.close()


def ask_in_browser(browser, url: str, question: str, tracker_port: int) -> tuple[str, str, list[str], list[str], object]:
    """Ask one question on a fresh page; returns (bot text, bot HTML, requests to the tracker, dialogs, pwned)."""
    from playwright.sync_api import expect

    page = browser.new_page()
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if f":{tracker_port}" in r.url else None)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(url)
        box = page.locator("#question textarea")
        expect(box).to_be_visible(timeout=60_000)
        box.fill(question)
        box.press("Enter")
        bot = page.locator("#chat").get_by_test_id("bot").last
        expect(bot).to_contain_text("42", timeout=90_000)
        expect(bot).not_to_contain_text("▌", timeout=60_000)
        page.wait_for_timeout(1500)  # give any injected fetch or script the time to fire
        text, html = bot.inner_text(), bot.inner_html()
        pwned = page.evaluate("window.__pwned")
        return text, html, requests, dialogs, pwned
    finally:
        page.close()


QUESTION = "Dự án Hoa Sen Kanagawa tuyển bao nhiêu kỹ sư bán dẫn?"


def test_document_markup_is_quoted_as_text_and_inert(browser, hostile_app, tracker):
    hostile_app["llm"].enqueue_reply("Không có trích dẫn nào ở đây.")  # no citation -> extractive quotes shown
    text, html, requests, dialogs, pwned = ask_in_browser(browser, hostile_app["url"], QUESTION, tracker.port)
    assert tracker.hits == [] and requests == []
    assert pwned is None and dialogs == []
    assert f'<img src="http://127.0.0.1:{tracker.port}/doc.png">' in text
    assert '<script>window.__pwned="doc-script"</script>' in text
    assert "javascript:window.__pwned" in text and "onerror=" in text
    assert f"![pixel](http://127.0.0.1:{tracker.port}/doc-md.png)" in text
    assert "<script" not in html.replace("&lt;script", "") and f":{tracker.port}" not in html.replace(
        f"http://127.0.0.1:{tracker.port}", "")


def test_llm_answer_markup_is_removed_and_inert(browser, hostile_app, tracker):
    hostile_app["llm"].enqueue_reply(
        f"Dự án tuyển **42 kỹ sư** [1]. {payload(tracker.port, 'llm')} "
        f"[chi tiết](http://127.0.0.1:{tracker.port}/llm-link)"
    )
    text, html, requests, dialogs, pwned = ask_in_browser(browser, hostile_app["url"], QUESTION, tracker.port)
    assert tracker.hits == [] and requests == []
    assert pwned is None and dialogs == []
    assert "<strong>42 kỹ sư</strong>" in html
    assert f"127.0.0.1:{tracker.port}/llm" not in html  # images, links and their URLs are gone
    assert "<script" not in html.replace("&lt;script", "")
    # The quote under Sources still shows the document's markup as text.
    assert f'<img src="http://127.0.0.1:{tracker.port}/doc.png">' in text


def test_gradio_file_routes_refuse_rag_home_and_corpus(hostile_app):
    base = hostile_app["url"]
    for target in (hostile_app["home"] / "manifest.json", hostile_app["home"] / "chunks.jsonl",
                   hostile_app["corpus"] / "hoa-sen.md", Path("/etc/passwd")):
        assert target.exists()
        for url in (f"{base}gradio_api/file={target}", f"{base}gradio_api/file={target.resolve()}"):
            r = httpx.get(url, timeout=10)
            assert r.status_code in (403, 404), (url, r.status_code)
            assert "Hoa Sen" not in r.text and "embedding_model" not in r.text and "root:" not in r.text


def test_launch_is_defensive(hostile_app):
    demo = hostile_app["demo"]
    assert demo.ssr_mode is False
    assert demo.analytics_enabled is False
    assert not demo.share
    home = str(Path(hostile_app["home"]).resolve())
    assert home in demo.blocked_paths and str(Path(hostile_app["corpus"]).resolve()) in demo.blocked_paths
    # Uploads above RAG_MAX_FILE_MB (0.05 MB here) are refused by Gradio before reaching any handler.
    big = httpx.post(f"{hostile_app['url']}gradio_api/upload", files={"files": ("big.txt", b"a" * 200_000)},
                     timeout=30)
    assert big.status_code == 413, big.status_code
