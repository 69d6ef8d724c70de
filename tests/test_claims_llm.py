"""Every sentence of an LLM answer is checked against the passage it cites, end to end: a real
OpenAI-compatible HTTP server on loopback (tests/scripted_llm.py) replays answers that mix supported
and invented claims, in Vietnamese and English, through `Pipeline.stream` and `Pipeline.ask`."""

from __future__ import annotations

import pytest

from rag.chain import REMOVED_NOTICE, UNSUPPORTED_FALLBACK_NOTICE, Pipeline
from rag.llm import OpenAICompatibleClient
from tests.scripted_llm import ScriptedLLM

VI_Q = "Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?"
EN_Q = "How many Vietnamese IT engineers work in Japan?"
GOOD_VI = "Có hơn 5.000 kỹ sư CNTT Việt Nam tại Nhật Bản [1]."
GOOD_EN = "More than 5,000 Vietnamese IT engineers work in Japan [1]."


@pytest.fixture
def server():
    with ScriptedLLM() as srv:
        yield srv


@pytest.fixture
def llm_pipeline(pipeline, server):
    llm = OpenAICompatibleClient(server.base_url, server.model, read_timeout=5.0, max_retries=0)
    return Pipeline(pipeline.settings, pipeline.loaded, pipeline.index, pipeline.lexicon, llm)


def _source_one_holds_the_figure(p: Pipeline, question: str) -> None:
    # The scripted answers cite [1]; make sure [1] is the passage with the 5.000 engineers.
    assert "5.000 kỹ sư CNTT" in p.retrieve(question).hits[0].chunk.text


def _final(events):
    assert events[-1].kind == "final"
    return events[-1].answer


@pytest.mark.parametrize("mode", ["stream", "ask"])
def test_vietnamese_answer_loses_its_invented_sentences(llm_pipeline, server, mode):
    _source_one_holds_the_figure(llm_pipeline, VI_Q)
    invented = [
        "Ngoài ra có 9.999 chuyên gia làm việc tại Nhật Bản [1].",  # number not in [1]
        "Họ chủ yếu sống ở Sapporo [1].",  # place not in [1]
        "Chính phủ sẽ cấp học bổng cho các nhà khoa học trẻ [1].",  # no number or name, but unsupported
    ]
    reply = " ".join([GOOD_VI, *invented])
    server.enqueue_reply(reply)
    if mode == "stream":
        events = list(llm_pipeline.stream(VI_Q))
        assert "".join(e.text for e in events if e.kind == "token") == reply  # tokens flow as written
        kinds = [e.kind for e in events]
        assert kinds.count("reset") == 1 and kinds.index("reset") > max(i for i, k in enumerate(kinds) if k == "token")
        answer = _final(events)
    else:
        answer = llm_pipeline.ask(VI_Q)
    assert answer.backend == "llm" and not answer.refused
    assert answer.text == GOOD_VI
    assert [c.n for c in answer.citations] == [1]
    assert answer.notice.startswith(REMOVED_NOTICE["vi"].split("{n}")[0] + "3 ")
    for sentence in invented:
        assert sentence.removesuffix(" [1].") in answer.notice  # flagged visibly, not silently dropped


@pytest.mark.parametrize("mode", ["stream", "ask"])
def test_english_answer_loses_its_invented_sentences(llm_pipeline, server, mode):
    _source_one_holds_the_figure(llm_pipeline, EN_Q)
    server.enqueue_reply("Có bao nhiêu kỹ sư CNTT Việt Nam làm việc tại Nhật Bản?")  # query translation
    reply = (f"{GOOD_EN} The community was founded in 1995 [1]. Ambassador Tanaka Hiroshi praised them [1]. "
             "The Deputy Prime Minister called them an important bridge between the two countries [1].")
    server.enqueue_reply(reply, chunks=5)
    answer = _final(list(llm_pipeline.stream(EN_Q))) if mode == "stream" else llm_pipeline.ask(EN_Q)
    assert answer.backend == "llm" and answer.language == "en"
    assert answer.text == (f"{GOOD_EN} The Deputy Prime Minister called them an important bridge between the two "
                           "countries [1].")
    assert "1995" in answer.notice and "Tanaka Hiroshi" in answer.notice
    assert answer.notice.startswith("Removed 2 sentence(s)")


def test_citations_follow_the_sentences_that_remain(llm_pipeline, server):
    hits = llm_pipeline.retrieve(VI_Q).hits
    other = next(i for i, h in enumerate(hits, 1) if "5.000" not in h.chunk.text)
    server.enqueue_reply(f"{GOOD_VI} Có 5.000 kỹ sư CNTT Việt Nam tại Nhật Bản [{other}].")
    answer = llm_pipeline.ask(VI_Q)
    assert answer.text == GOOD_VI and [c.n for c in answer.citations] == [1]


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_answer_with_nothing_supported_falls_back_to_the_quotes(llm_pipeline, server, lang):
    question = VI_Q if lang == "vi" else EN_Q
    if lang == "en":
        server.enqueue_reply("Có bao nhiêu kỹ sư CNTT Việt Nam làm việc tại Nhật Bản?")
    server.enqueue_reply("Có 12.345 kỹ sư tại Fukuoka [1]." if lang == "vi" else "There are 12,345 engineers in Fukuoka [1].")
    events = list(llm_pipeline.stream(question))
    kinds = [e.kind for e in events]
    assert "reset" in kinds and kinds.index("reset") > kinds.index("token")  # streamed text withdrawn
    answer = _final(events)
    assert answer.backend == "extractive" and answer.notice == UNSUPPORTED_FALLBACK_NOTICE[lang]
    assert "12.345" not in answer.text and "12,345" not in answer.text and "Fukuoka" not in answer.text


def test_refusals_and_supported_answers_are_left_alone(llm_pipeline, server):
    server.enqueue_reply("Không tìm thấy thông tin này trong tài liệu.")
    refusal = llm_pipeline.ask("Dân số của Osaka là bao nhiêu?")
    assert refusal.refused and refusal.backend == "llm" and not refusal.notice
    server.enqueue_reply(f"Theo tài liệu:\n- {GOOD_VI}\n- Phó Thủ tướng tin tưởng đây là cầu nối quan trọng [1].")
    events = list(llm_pipeline.stream(VI_Q))
    assert "reset" not in [e.kind for e in events]  # nothing removed: the streamed text stands
    answer = _final(events)
    assert answer.backend == "llm" and not answer.notice
    assert answer.text == f"Theo tài liệu:\n- {GOOD_VI}\n- Phó Thủ tướng tin tưởng đây là cầu nối quan trọng [1]."


@pytest.mark.parametrize(
    ("question", "lang"),
    [("JICA tài trợ bao nhiêu cho tỉnh Cà Mau năm 2019?", "vi"),
     ("How much did JICA fund Ca Mau province in 2019?", "en")],
)
def test_no_passage_with_the_anchors_means_no_llm_call_and_a_refusal(llm_pipeline, server, question, lang):
    # Cà Mau is in no document: the LLM is not asked to make an answer out of the topic words.
    from rag.answer import REFUSAL

    server.enqueue_reply("JICA đã tài trợ cho nhiều dự án ở Việt Nam [1].")
    answer = llm_pipeline.ask(question)
    assert answer.refused and answer.text == REFUSAL[lang], answer.text
    # Refused before any answer generation (an English question may still be translated for retrieval).
    assert not [r for r in server.chat_requests if "<source" in str(r.body)]


def test_an_llm_answer_citing_only_passages_without_the_anchors_falls_back(llm_pipeline, server):
    # The question's anchors (EMB-AI) are in some retrieved passage, but the model cites another one
    # whose sentences are true yet say nothing about EMB-AI: not an answer.
    from rag.chain import UNSUPPORTED_FALLBACK_NOTICE

    question = "Ứng dụng EMB-AI được ra mắt ở đâu?"
    hits = llm_pipeline.retrieve(question).hits
    off = next(i for i, h in enumerate(hits, 1) if "EMB-AI" not in f"{h.chunk.title}\n{h.chunk.text}")
    quote = next(s for s in hits[off - 1].chunk.text.split(". ") if len(s.split()) > 6)
    server.enqueue_reply(f"{quote} [{off}].")
    events = list(llm_pipeline.stream(question))
    answer = _final(events)
    assert answer.backend == "extractive", answer.text
    assert answer.notice == UNSUPPORTED_FALLBACK_NOTICE["vi"]
    assert "reset" in [e.kind for e in events]  # the streamed tokens are discarded
    assert all("EMB-AI" in f"{c.chunk.title}\n{c.chunk.text}" for c in answer.citations)
