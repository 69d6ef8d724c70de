"""The web app as people use it: `rag.server.create_app` (API + UI, the app `rag serve` runs) under uvicorn on
loopback, driven by Debian's Chromium through Playwright. One test per rough edge of issue 15."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import make_settings
from tests.servers import free_port

pytestmark = pytest.mark.slow

# Every Vietnamese letter: the plain ones, đ, and each vowel (with its breve/circumflex/horn) in all six tones.
_VOWELS = "aăâeêioôơuưy"
_TONES = ("", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323")
VI_LETTERS = "".join(sorted(
    {unicodedata.normalize("NFC", v + t) for v in _VOWELS for t in _TONES} | set("bcdđghklmnpqrstvx")
))
VI_LETTERS += VI_LETTERS.upper()


SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def screenshot(page, name: str) -> None:
    """The README's screenshots: written to docs/screenshots only with UPDATE_SCREENSHOTS=1 (so a test run
    leaves the checkout clean); otherwise taken and checked, then dropped."""
    path = SCREENSHOTS / name if os.environ.get("UPDATE_SCREENSHOTS") == "1" else None
    png = page.screenshot(path=str(path) if path else None)
    assert len(png) > 10_000


@contextlib.contextmanager
def serve_app(service) -> Iterator[str]:
    """`rag.server.create_app(service)` under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from rag.server import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the app did not start")
        time.sleep(0.2)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def app_url(service):
    with serve_app(service) as url:
        yield url


@pytest.fixture(scope="module")
def fallback_service(seed_home):
    """A service whose configured embedder cannot be loaded, so it runs on the bundled fallback (the real
    `load_embedder` path) and shows the fallback notice."""
    from rag.chain import Pipeline
    from rag.embed import load_embedder
    from rag.index import Index
    from rag.lexicon import default_lexicon
    from rag.service import Service

    settings = make_settings(seed_home)
    loaded = load_embedder(make_settings(seed_home, embedding_model="vj-rag-tests/no-such-model",
                                         embedding_allow_download=False))
    assert loaded.is_fallback
    svc = Service(settings, pipeline_factory=lambda s: Pipeline(s, loaded, Index.open(s), default_lexicon()))
    svc.start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def fallback_url(fallback_service):
    with serve_app(fallback_service) as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def wait_loaded(page) -> None:
    """Wait until the page's load event filled it in (the notice loses its warming-up line then)."""
    from playwright.sync_api import expect

    expect(page.locator("#notices")).to_contain_text("offline", timeout=60_000)
    expect(page.locator("#notices")).not_to_contain_text("⟳", timeout=60_000)


# ---------------------------------------------------------------- offline page, fonts


def test_page_requests_only_its_own_origin(page, app_url):
    """Fonts, scripts and styles all come from the app: nothing is asked of Google Fonts or any CDN."""
    from playwright.sync_api import expect

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(app_url)
    wait_loaded(page)
    page.locator("#question textarea").fill("EMB-AI là gì?")
    page.locator("#question textarea").press("Enter")
    expect(page.get_by_test_id("bot").first).to_contain_text("EMB-AI", timeout=90_000)
    page.locator("#models .label-wrap").click()  # everything the page can show has been asked for
    page.wait_for_timeout(1_000)
    origin = urlparse(app_url).netloc
    http = [u for u in requests if u.startswith(("http:", "https:", "ws:", "wss:"))]
    assert http, "no request was recorded"
    outside = [u for u in http if urlparse(u).netloc != origin]
    assert outside == [], outside


@pytest.mark.parametrize("weight", [400, 600, 700])
def test_vietnamese_letters_use_one_font_in_every_weight(page, app_url, weight):
    """Every Vietnamese letter, in regular, semi-bold and bold, is drawn by a single font of the page's
    stack: no per-letter fallback (the "B next to ộ" mismatch in bold text)."""
    page.goto(app_url)
    wait_loaded(page)
    page.evaluate(
        """([text, weight]) => {
            const el = document.createElement('span');
            el.id = 'vi-probe';
            el.textContent = 'Bộ Bắc Bình ' + text;
            el.style.fontWeight = String(weight);
            document.querySelector('#notices').appendChild(el);
        }""",
        [VI_LETTERS, weight],
    )
    family = page.evaluate("getComputedStyle(document.querySelector('#vi-probe')).fontFamily")
    assert "Source Sans Pro" not in family and "DejaVu Sans" in family, family
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#vi-probe"})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    assert len(fonts) == 1, fonts
    assert sum(f["glyphCount"] for f in fonts) >= len(VI_LETTERS)


# ---------------------------------------------------------------- chat


def test_chat_answer_bold_vietnamese_is_one_font(page, app_url):
    """A real answer: its bold source titles (Vietnamese with tones) are drawn by one font."""
    from playwright.sync_api import expect

    from tests.test_ui import ENGINEERS_TITLE, QUESTION_VI

    page.goto(app_url)
    wait_loaded(page)
    page.locator("#question textarea").fill(QUESTION_VI)
    page.locator("#question textarea").press("Enter")
    bot = page.locator("#chat").get_by_test_id("bot").first
    expect(bot).to_contain_text(ENGINEERS_TITLE, timeout=90_000)
    bold = bot.locator("strong", has_text=ENGINEERS_TITLE).first
    expect(bold).to_be_visible()
    bold.evaluate("(el) => el.id = 'bold-probe'")
    fonts = _fonts_of(page, "#bold-probe")
    assert len(fonts) == 1, fonts
    screenshot(page, "chat.png")



def test_long_question_bubble_shows_first_lines_and_full_text_reaches_the_service(page, app_url):
    from playwright.sync_api import expect

    question = "\n".join(f"Dòng {i}: " + "kỹ sư CNTT Việt Nam tại Nhật Bản " * 10 for i in range(160))[:30_000]
    assert len(question) == 30_000
    page.goto(app_url)
    wait_loaded(page)
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    user = page.locator("#chat").get_by_test_id("user").first
    bot = page.locator("#chat").get_by_test_id("bot").first
    # The service saw all 30,000 characters: it refuses the question, naming its length.
    expect(bot).to_contain_text(re.compile(r"quá dài \(30[.,]000 ký tự\)"), timeout=60_000)
    shown = user.inner_text()
    assert shown.startswith("Dòng 0: kỹ sư CNTT")
    assert shown.rstrip().endswith("…")
    assert len(shown) < 500
    assert "Dòng 5:" not in shown


def test_fallback_notice_is_one_line_dismissible_and_links_to_models(page, fallback_url):
    from playwright.sync_api import expect

    page.goto(fallback_url)
    wait_loaded(page)
    notice = page.locator("#notices")
    expect(notice).to_contain_text("all-MiniLM-L6-v2")
    expect(notice).to_contain_text("⚠")
    assert notice.inner_text().count("⚠") == 1 and "\ufe0f" not in notice.inner_text()
    # Compact: the fallback sentence and the mode line, no more than 4 lines of text at this width.
    line_height = float(page.evaluate("parseFloat(getComputedStyle(document.querySelector('#notices p')).lineHeight)"))
    assert notice.bounding_box()["height"] <= 4.5 * line_height

    models = page.locator("#models")
    expect(models).not_to_contain_text("RAG_EMBEDDING_MODEL")  # closed
    notice.get_by_role("link").click()
    expect(models).to_contain_text("RAG_EMBEDDING_MODEL")
    expect(models).to_be_in_viewport()

    page.locator("#notices-dismiss").click()
    expect(page.locator("#notices-row")).to_be_hidden()
    expect(page.locator("#question textarea")).to_be_visible()


def test_no_fallback_notice_with_the_configured_model(page, app_url):
    from playwright.sync_api import expect

    page.goto(app_url)
    wait_loaded(page)
    expect(page.locator("#notices")).not_to_contain_text("⚠")
    expect(page.locator("#notices-dismiss")).to_be_visible()


# ---------------------------------------------------------------- evaluation tab


def _fonts_of(page, selector: str) -> list[dict]:
    """The platform fonts Chromium used to draw the text of the first element matching `selector`."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    return cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]


def _words_split_across_lines(page, selector: str) -> list[str]:
    """Words inside the matching elements that the browser broke over two lines."""
    return page.evaluate(
        """(selector) => {
            const split = [];
            for (const el of document.querySelectorAll(selector)) {
                const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
                for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                    const re = /\\S+/g;
                    let m;
                    while ((m = re.exec(node.data))) {
                        const range = document.createRange();
                        range.setStart(node, m.index);
                        range.setEnd(node, m.index + m[0].length);
                        const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
                        if (tops.size > 1) split.push(m[0]);
                    }
                }
            }
            return split;
        }""",
        selector,
    )


def test_evaluation_reattaches_after_reload_and_shows_results(browser, writable_service):
    """A reload during a run shows the run's progress (questions done / total), then its results; headers
    keep their words whole and status icons need no emoji font."""
    from playwright.sync_api import expect

    gold = Path(__file__).resolve().parent.parent / "eval" / "datasets" / "gold.jsonl"
    n = sum(1 for line in gold.read_text(encoding="utf-8").splitlines() if line.strip())
    with serve_app(writable_service) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        try:
            page.goto(url)
            wait_loaded(page)
            page.get_by_role("tab", name="Evaluation / Đánh giá").click()
            configs = page.locator("#eval-configs input")
            configs.click()
            configs.fill("bm25")
            configs.press("Enter")
            page.locator("#eval-run").click()
            count = page.locator("#eval-progress-count")
            expect(count).to_have_text(re.compile(rf"^[1-9]\d* / {2 * n}$"), timeout=120_000)
            before = int(count.inner_text().split("/")[0])

            page.reload()  # while the run is going
            wait_loaded(page)
            page.get_by_role("tab", name="Evaluation / Đánh giá").click()
            expect(page.locator("#eval-progress-bar")).to_be_visible(timeout=10_000)
            expect(page.locator("#eval-configs")).to_contain_text("bm25")  # the job's choices, not the defaults
            expect(count).to_have_text(re.compile(rf"^\d+ / {2 * n}$"))
            assert int(count.inner_text().split("/")[0]) >= before
            assert page.locator("#eval-progress-bar").get_attribute("max") == str(2 * n)

            status = page.locator("#eval-status")
            expect(status).to_contain_text(f"{n} questions × 2 configuration(s)", timeout=300_000)
            expect(page.locator("#eval-progress-bar")).to_be_hidden()
            table = page.locator("#eval-table")
            expect(table).to_contain_text("hybrid")
            expect(table).to_contain_text("bm25")
            expect(page.get_by_text("Error")).to_have_count(0)
            expect(page.locator("#eval-detail")).to_contain_text("Question / Câu hỏi", timeout=20_000)

            headers = page.locator("#eval-table th")
            assert headers.count() >= 5
            assert "Refusal accuracy" in " ".join(headers.all_inner_texts())
            assert _words_split_across_lines(page, "#eval-table th") == []

            tab_text = page.locator("#eval-status").inner_text() + page.locator("#eval-detail").inner_text()
            assert "\ufe0f" not in tab_text and "\u2705" not in tab_text  # emoji need an emoji font
            assert status.inner_text().startswith("✓")
            assert len(_fonts_of(page, "#eval-status p")) == 1, _fonts_of(page, "#eval-status p")
            screenshot(page, "evaluation.png")
        finally:
            context.close()


# ---------------------------------------------------------------- connections tab


def test_connections_sources_are_a_list_and_the_overview_has_headers(page, app_url, service):
    from playwright.sync_api import expect

    from rag.ui_connect import OVERVIEW_HEADERS

    expected = service.connect(None, province="Phú Thọ", sector="semiconductors", lang="vi")
    assert expected.sources, "the seed corpus should give sources for this query"
    page.goto(app_url)
    wait_loaded(page)
    page.get_by_role("tab", name="Kết nối / Connections").click()
    page.locator("#connect-province input").fill("Phú Thọ")
    page.locator("#connect-province input").press("Enter")
    page.locator("#connect-province input").press("Escape")
    page.locator("#connect-sector input").press_sequentially("ban dan", delay=30)
    expect(page.get_by_role("option")).to_have_count(1)
    page.get_by_role("option").first.click()
    page.locator("#connect-button").click()

    output = page.locator("#connect-output")
    expect(output).to_contain_text("Nguồn", timeout=60_000)
    items = output.locator("ol > li")
    expect(items).to_have_count(len(expected.sources))
    for li, c in zip(items.all(), expected.sources, strict=True):
        text = li.inner_text()
        assert text.startswith(c.chunk.title), text
        assert c.chunk.source in text and c.chunk.date in text
    text = output.inner_text()
    assert not any(c.chunk.chunk_id in text for c in expected.sources)

    page.get_by_text("Tổng quan thực thể trong tài liệu / Entities in the documents").click()
    table = page.locator("#connect-overview")
    headers = table.locator("th")
    expect(headers.first).to_be_visible()
    texts = [" ".join(t.split()) for t in headers.all_inner_texts()]
    assert [t for t in texts if t] == OVERVIEW_HEADERS, texts
    assert _words_split_across_lines(page, "#connect-overview th") == []
    widths = {t: headers.nth(i).bounding_box()["width"] for i, t in enumerate(texts) if t}
    assert widths["Thực thể / Entity"] > widths["Số đoạn / Chunks"]
    assert widths["Thường đi cùng / Co-occurring"] > widths["Số đoạn / Chunks"]
    expect(table.locator("tbody tr").first).to_contain_text("/")
    # Vietnamese in tables is drawn by the text font: no monospace font here has every Vietnamese letter.
    families = page.evaluate(
        "[...document.querySelectorAll('#connect-overview th *, #connect-overview td *')]"
        ".map((el) => getComputedStyle(el).fontFamily)"
    )
    assert families and not [f for f in families if "Mono" in f or "monospace" in f.split(",")[0]], set(families)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "connections.png")


def test_sector_suggestions_follow_typing(page, app_url):
    """Typing part of a sector name (with or without tones, Vietnamese or English) narrows the choices."""
    from playwright.sync_api import expect

    page.goto(app_url)
    wait_loaded(page)
    page.get_by_role("tab", name="Kết nối / Connections").click()
    box = page.locator("#connect-sector input")
    options = page.get_by_role("option")
    for typed, expected in [("y te", "Y tế / Healthcare"), ("ban dan", "Bán dẫn / Semiconductors"),
                            ("Nông", "Nông nghiệp / Agriculture"), ("robot", "Robot / Robotics")]:
        box.fill("")
        box.press_sequentially(typed, delay=30)
        expect(options).to_have_count(1)
        expect(options.first).to_contain_text(expected)
    box.fill("")
    box.press_sequentially("tri tue", delay=30)
    options.first.click()
    expect(box).to_have_value(re.compile(r"^Trí tuệ nhân tạo / Artificial intelligence"))
