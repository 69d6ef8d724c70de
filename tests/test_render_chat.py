"""Chat rendering of answers (issue: a UI people use every day): quote once, one number per passage,
missing metadata left out, Vietnamese dates and numbers, collapsible source cards — unit tests on the
Markdown plus one real-browser check that the card folds and the page shows each quote once."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from rag.render import answer_markdown, merged_citations
from rag.text import vi_number
from rag.types import Answer, Chunk, Citation


def _chunk(cid: str, text: str, **kw) -> Chunk:
    return Chunk(chunk_id=cid, doc_id=kw.pop("doc_id", "doc"), position=0, text=text, char_start=0,
                 char_end=len(text), **kw)


A = _chunk("a#0", "Câu một có 5.000 kỹ sư. Câu hai nói về EMB-AI.", title="Bài A", source="chinhphu.vn",
           date="2025-06-01", url="https://chinhphu.vn/a")
B = _chunk("b#0", "Một câu khác của bài B về Osaka.", title="Bài B", doc_id="b")


def _answer(lang="vi") -> Answer:
    cites = (Citation(1, A, "Câu một có 5.000 kỹ sư."), Citation(2, A, "Câu hai nói về EMB-AI."),
             Citation(3, B, "Một câu khác của bài B về Osaka."))
    text = ("Theo các tài liệu:\n- Câu một có 5.000 kỹ sư. [1]\n- Câu hai nói về EMB-AI. [2]\n"
            "- Một câu khác của bài B về Osaka. [3]")
    return Answer(question="q", language=lang, text=text, refused=False, backend="extractive", citations=cites)


def test_two_citations_of_one_passage_share_one_number():
    text, sources = merged_citations(_answer())
    assert re.findall(r"\[(\d+)\]", text) == ["1", "1", "2"]
    assert [(n, c.chunk_id, len(q)) for n, c, q in sources] == [(1, "a#0", 2), (2, "b#0", 1)]


def test_each_quote_is_shown_once_and_sources_are_collapsible_cards():
    md = answer_markdown(_answer())
    for quote in ("Câu một có 5.000 kỹ sư.", "Câu hai nói về EMB-AI.", "Một câu khác của bài B về Osaka."):
        assert md.count(quote.split()[-1].rstrip(".")) == 1, quote  # in the answer, not again under the source
    assert md.count("<details>") == 2 and "<summary>[1] <strong>Bài A</strong> — chinhphu.vn, 01/06/2025</summary>" in md
    assert 'href="https://chinhphu.vn/a"' in md and "Mở bài gốc" in md


def test_missing_metadata_is_left_out_not_written_three_ways():
    md = answer_markdown(_answer())
    card_b = md[md.index("[2] <strong>Bài B</strong>"):]
    assert card_b.startswith("[2] <strong>Bài B</strong></summary>")  # no "— không rõ · không rõ"
    for word in ("không rõ", "unknown", "?"):
        assert word not in md.split("**Nguồn**")[1].split("<sub>")[0]
    en = answer_markdown(replace(_answer("en"), language="en"))
    assert "2025-06-01" in en and "Open the article" in en and "unknown" not in en


def test_llm_answers_show_the_quote_in_the_card():
    llm = replace(_answer(), backend="llm", text="Có 5.000 kỹ sư [1] và một văn phòng ở Osaka [3].")
    md = answer_markdown(llm, "m")
    assert "<blockquote>Câu một có 5.000 kỹ sư.</blockquote>" in md and "[1]" in md and "[2]" in md


def test_vietnamese_numbers_use_vietnamese_separators():
    from rag.errors import BadInput
    from rag.retrieve import validate_question

    assert vi_number(29999) == "29.999" and vi_number(1_234_567) == "1.234.567"
    with pytest.raises(BadInput) as err:
        validate_question("x" * 30_000)
    assert "30.000" in err.value.message("vi") and "30,000" in err.value.message("en")


@pytest.mark.slow
def test_browser_shows_each_quote_once_with_a_folded_source_card(service):
    sync_api = pytest.importorskip("playwright.sync_api")
    from rag.ui import build_ui
    from tests.servers import free_port
    from tests.test_ui import CHROMIUM, CHROMIUM_ARGS, QUESTION_VI

    demo = build_ui(service)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#question textarea").fill(QUESTION_VI)
            page.locator("#question textarea").press("Enter")
            bot = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
            sync_api.expect(bot).to_contain_text("Nguồn", timeout=90_000)
            card = bot.locator("details").first
            sync_api.expect(card.locator("summary")).to_contain_text("[1]")
            assert card.get_attribute("open") is None  # folded until the reader opens it
            text = bot.inner_text()
            assert text.count("Biểu dương cộng đồng") == 1  # the quote appears once (not again in its card)
            card.locator("summary").click()
            sync_api.expect(card).to_have_attribute("open", "")
            browser.close()
    finally:
        demo.close()
