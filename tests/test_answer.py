"""The extractive answerer: cited quotes for answerable questions, refusals for the rest."""

import re

import pytest

from rag.answer import REFUSAL


def _check_citations(answer):
    numbers = {c.n for c in answer.citations}
    assert numbers == set(range(1, len(numbers) + 1))
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert cited == numbers
    for c in answer.citations:
        for part in c.quote.split(" … "):
            assert part in c.chunk.text


@pytest.mark.parametrize(
    ("question", "must_contain", "lang"),
    [
        ("Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?", "5.000", "vi"),
        ("EMB-AI là gì?", "EMB-AI", "vi"),
        ("emb-ai la gi", "EMB-AI", "vi"),
        ("Hội nghị thường niên lần thứ 20 Diễn đàn STS thu hút bao nhiêu đại biểu?", "1.500", "vi"),
        ("How many Vietnamese IT engineers work in Japan?", "5.000", "en"),
    ],
)
def test_answerable_questions_are_quoted_with_citations(pipeline, question, must_contain, lang):
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    assert answer.language == lang and answer.backend == "extractive"
    assert must_contain in answer.text
    assert answer.text.startswith("Theo các tài liệu:" if lang == "vi" else "According to the documents")
    _check_citations(answer)
    assert set(answer.timings_ms) >= {"retrieve", "answer", "total"}


@pytest.mark.parametrize(
    ("question", "lang"),
    [
        ("Dân số của Osaka là bao nhiêu?", "vi"),
        ("Thủ đô của Pháp là gì?", "vi"),
        ("hoc phi dai hoc o Tokyo la bao nhieu", "vi"),
        ("What is the population of Osaka?", "en"),
        ("How much is the JICA loan for the Hanoi metro?", "en"),
    ],
)
def test_unanswerable_questions_are_refused_without_quotes(pipeline, question, lang):
    answer = pipeline.ask(question)
    assert answer.refused, answer.text
    assert answer.text == REFUSAL[lang]
    assert answer.citations == ()
