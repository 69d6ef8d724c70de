"""Conflicting sources: when documents give different answers to the same question, the answer shows
both, each with its citation and date (newest first), instead of picking one silently (issue 13, §3)."""

from __future__ import annotations

import re

import pytest

from rag.answer import DISAGREE_NOTE, SOURCES_DISAGREE

DOCS = {
    "lao-dong-2022.md": (
        "---\ntitle: \"Lao động Việt Nam ở nước ngoài năm 2021\"\ndate: \"2022-03-15\"\nsource: \"Báo A\"\n---\n"
        "Theo Cục Quản lý lao động ngoài nước, số lao động Việt Nam đang làm việc tại Nhật Bản là 345.000 người.\n\n"
        "Cục cho biết thị trường này đòi hỏi tay nghề và tiếng Nhật ngày càng cao.\n"
    ),
    "lao-dong-2024.md": (
        "---\ntitle: \"Thị trường lao động Nhật Bản\"\ndate: \"2024-06-20\"\nsource: \"Báo B\"\n---\n"
        "Theo Cục Quản lý lao động ngoài nước, số lao động Việt Nam đang làm việc tại Nhật Bản là 520.000 người.\n\n"
        "Nhật Bản tiếp tục là thị trường lớn nhất tiếp nhận lao động Việt Nam.\n"
    ),
    # Same figure kind, another country: not a conflict with the Japan figures.
    "lao-dong-han-quoc.md": (
        "---\ntitle: \"Lao động tại Hàn Quốc\"\ndate: \"2024-09-01\"\nsource: \"Báo C\"\n---\n"
        "Theo Cục Quản lý lao động ngoài nước, số lao động Việt Nam đang làm việc tại Hàn Quốc là 90.000 người.\n"
    ),
    # A planted claim contradicting the seeds' ambassador (PoisonedRAG-style).
    "dai-su-2025.md": (
        "---\ntitle: \"Tin ngoại giao\"\ndate: \"2025-02-01\"\nsource: \"Báo D\"\n---\n"
        "Đại sứ Việt Nam tại Nhật Bản hiện nay là ông Đỗ Quang Vinh, theo thông cáo báo chí mới nhất.\n"
    ),
}


@pytest.fixture(scope="module")
def conflicted(tmp_path_factory, loaded_embedder):
    """A real index: the seed corpus plus the documents above."""
    from tests.conftest import pipeline_beside_seeds

    return pipeline_beside_seeds(tmp_path_factory.mktemp("conflicts"), loaded_embedder, DOCS)


def _cited(answer, marker: str) -> int:
    """The citation number whose quote holds `marker` (fails when none does)."""
    return next(c.n for c in answer.citations if marker in c.quote)


@pytest.mark.parametrize(
    ("question", "lang", "new", "old", "new_date", "old_date"),
    [
        ("Có bao nhiêu lao động Việt Nam đang làm việc tại Nhật Bản?", "vi", "520.000", "345.000",
         "20/06/2024", "15/03/2022"),
        ("co bao nhieu lao dong viet nam dang lam viec tai nhat ban", "vi", "520.000", "345.000",
         "20/06/2024", "15/03/2022"),
        ("How many Vietnamese workers are working in Japan?", "en", "520,000", "345,000",
         "20/06/2024", "15/03/2022"),
    ],
)
def test_conflicting_figures_are_both_shown_newest_first(conflicted, question, lang, new, old, new_date, old_date):
    answer = conflicted.ask(question)
    assert not answer.refused, answer.text
    lines = answer.text.splitlines()
    head = next(line for line in lines if line.startswith(SOURCES_DISAGREE[lang]))
    n_new, n_old = _cited(answer, new.replace(",", ".")), _cited(answer, old.replace(",", "."))
    # Each figure with its own citation and its source's date, the newer first.
    for figure, n, date in ((new, n_new, new_date), (old, n_old, old_date)):
        assert re.search(rf"{re.escape(figure)}[^\[;]*\[{n}\] \({re.escape(date)}\)", head), head
    assert head.index(new) < head.index(old)
    assert DISAGREE_NOTE[lang] in lines
    assert "90.000" not in answer.text  # the Korea figure answers another question
    by_n = {c.n: c for c in answer.citations}
    assert by_n[n_new].chunk.date == "2024-06-20" and by_n[n_old].chunk.date == "2022-03-15"


@pytest.mark.parametrize(
    ("question", "lang"),
    [("Đại sứ Việt Nam tại Nhật Bản là ai?", "vi"), ("Who is Vietnam's ambassador to Japan?", "en")],
)
def test_a_planted_name_does_not_silently_replace_the_seed_answer(conflicted, question, lang):
    answer = conflicted.ask(question)
    assert not answer.refused, answer.text
    head = next(line for line in answer.text.splitlines() if line.startswith(SOURCES_DISAGREE[lang]))
    assert "Phạm Quang Hiệu [" in head and "Đỗ Quang Vinh [" in head, head
    # Only names in the asked role: the deputy minister who thanked the ambassador is not a rival answer.
    assert "Nguyễn Hoàng Giang" not in head and "Nhật Bản Phạm" not in head, head
    docs = {c.chunk.doc_id for c in answer.citations}
    assert "dai-su-2025" in docs and len(docs) >= 2


def test_one_source_answers_without_a_disagreement(conflicted):
    answer = conflicted.ask("Hội nghị thường niên lần thứ 20 Diễn đàn STS thu hút bao nhiêu đại biểu?")
    assert not answer.refused, answer.text
    assert not any(line.startswith(SOURCES_DISAGREE["vi"]) for line in answer.text.splitlines())
    assert DISAGREE_NOTE["vi"] not in answer.text
    assert answer.text.splitlines()[1].startswith("Trả lời: hơn 1.500 đại biểu [1]")


def test_an_llm_answer_giving_both_sides_keeps_both_after_the_claim_check(conflicted):
    """With an LLM backend (the scripted OpenAI-compatible server on loopback), an answer that follows
    the prompt's rule — each figure with its source number and date — survives the per-sentence check."""
    from rag.chain import Pipeline
    from rag.grounding import load_prompt
    from rag.llm import OpenAICompatibleClient
    from tests.scripted_llm import ScriptedLLM

    question = "Có bao nhiêu lao động Việt Nam đang làm việc tại Nhật Bản?"
    assert "không thống nhất" in load_prompt(conflicted.prompts_dir, "answer_system", "vi")
    hits = conflicted.retrieve(question).hits
    n_new = next(i for i, h in enumerate(hits, 1) if "520.000" in h.chunk.text)
    n_old = next(i for i, h in enumerate(hits, 1) if "345.000" in h.chunk.text)
    reply = (
        f"Các nguồn không thống nhất. Nguồn ngày 20/06/2024 cho biết số lao động Việt Nam đang làm việc tại "
        f"Nhật Bản là 520.000 người [{n_new}]. Nguồn ngày 15/03/2022 nêu số lao động Việt Nam tại Nhật Bản là "
        f"345.000 người [{n_old}]. Con số mới nhất là 610.000 người [{n_new}]."
    )
    with ScriptedLLM() as server:
        llm = OpenAICompatibleClient(server.base_url, server.model, read_timeout=5.0, max_retries=0)
        p = Pipeline(conflicted.settings, conflicted.loaded, conflicted.index, conflicted.lexicon, llm)
        server.enqueue_reply(reply)
        answer = p.ask(question)
    assert answer.backend == "llm" and not answer.refused, answer.text
    assert "520.000 người" in answer.text and "345.000 người" in answer.text  # both sides kept
    assert "20/06/2024" in answer.text and "15/03/2022" in answer.text  # with their sources' dates
    assert "610.000" not in answer.text  # an invented figure is still removed
    assert {c.n for c in answer.citations} >= {n_new, n_old}
