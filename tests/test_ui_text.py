"""What the page shows of long questions and of the service's notices (no browser, no server)."""

from __future__ import annotations

from rag.ui import (
    ICON_WARN,
    MODELS_FALLBACK,
    PREVIEW_CHARS,
    models_section,
    question_preview,
    restore_questions,
)


def test_short_question_is_shown_unchanged():
    q = "EMB-AI là gì?\nVà ra mắt khi nào?"
    assert question_preview(q) == q


def test_long_question_shows_its_first_lines_with_an_ellipsis():
    q = "\n".join(f"dòng {i} kỹ sư" for i in range(50))
    shown = question_preview(q, max_lines=3)
    assert shown == "dòng 0 kỹ sư\ndòng 1 kỹ sư\ndòng 2 kỹ sư …"


def test_one_long_line_is_cut_at_a_word_boundary():
    q = "hợp tác bán dẫn " * 3000  # 48,000 characters on one line
    shown = question_preview(q)
    assert shown.endswith(" …") and len(shown) <= PREVIEW_CHARS + 2
    assert shown[:-2] == shown[:-2].rstrip() and q.startswith(shown[:-2])
    assert shown[:-2].endswith(("hợp", "tác", "bán", "dẫn"))


def test_full_questions_are_restored_in_the_history_for_follow_ups():
    long_q = "Câu hỏi rất dài về kỹ sư CNTT " * 40
    history = [
        {"role": "user", "content": question_preview(long_q)},
        {"role": "assistant", "content": "Theo các tài liệu…"},
        {"role": "user", "content": [{"type": "text", "text": "EMB-AI là gì?"}]},
    ]
    restored = restore_questions(history, [long_q, "EMB-AI là gì?"])
    assert restored[0]["content"] == long_q
    assert restored[1:] == history[1:]
    assert restore_questions(history, []) == history


def test_models_section_comes_from_the_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# X\n\n## Models\n\nUse `RAG_EMBEDDING_MODEL`.\n\n## Next\n\nother\n", encoding="utf-8")
    assert models_section(readme) == "Use `RAG_EMBEDDING_MODEL`."
    assert models_section(tmp_path / "missing.md") == MODELS_FALLBACK
    section = models_section()  # the repository's README has the section the notice links to
    assert section != MODELS_FALLBACK and "RAG_EMBEDDING_MODEL" in section and "## " not in section


def test_notice_icons_are_text_symbols():
    assert "\ufe0f" not in ICON_WARN and ICON_WARN == "\u26a0"
