"""Connection questions typed into the chat get the connection finder's structured, cited answer
through `Pipeline.ask` / `Pipeline.stream` (so every interface gets it), with the province and sector
named back when the documents say nothing about them; plus the finder's own guarantees: a sector tag
only with a quote that names the sector, a province's items only when their quote names it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.chain import Pipeline, Turn
from rag.connect import (
    _WEAK_SECTOR_SURFACES,
    HEADERS,
    SECTOR_ABSENT_NOTE,
    build_connection_answer,
    is_chat_connection_query,
    province_phrase,
    render_markdown,
    sector_phrase,
)
from rag.entities import _fold, find_mentions
from rag.llm import OpenAICompatibleClient
from tests.scripted_llm import ScriptedLLM

GOLD = Path(__file__).resolve().parent.parent / "eval" / "datasets" / "gold.jsonl"
SEAFOOD_VI = "Công ty chúng tôi ở tỉnh Nghệ An, ngành thủy sản, muốn tìm đối tác Nhật — bắt đầu từ đâu?"
SEAFOOD_ND = "cong ty chung toi o tinh nghe an, nganh thuy san, muon tim doi tac nhat - bat dau tu dau?"
SEAFOOD_EN = "Our company in Nghệ An province, in the seafood sector, wants Japanese partners — where do we start?"
PLACEHOLDER_VI = "Công ty chúng tôi ở tỉnh P, ngành S, muốn tìm đối tác Nhật — bắt đầu từ đâu?"
NATIONAL = ("Đại sứ quán Việt Nam tại Nhật Bản", "Tổng Lãnh sự quán Việt Nam tại Osaka", "Mạng lưới đổi mới sáng tạo")
NATIONAL_EN = ("Embassy of Viet Nam in Japan", "Consulate General of Viet Nam in Osaka", "Vietnam Innovation Network")


# ---------------------------------------------------------------- the recogniser


@pytest.mark.parametrize(
    "question",
    [
        SEAFOOD_VI, SEAFOOD_ND, SEAFOOD_EN, PLACEHOLDER_VI,
        "Our company in province P, sector S, wants Japanese partners — where do we start?",
        "Doanh nghiệp ở Phú Thọ muốn hợp tác về bán dẫn với Nhật Bản thì có thể liên hệ những đầu mối nào?",
        "doanh nghiep phu tho muon hop tac ban dan voi nhat thi lien he ai",
        "Which offices can help a provincial SME find business partners in Osaka?",
        "We are a small IT firm in Đà Nẵng. Who can help us find partners in Japan?",
    ],
)
def test_local_business_questions_are_recognised(question):
    assert is_chat_connection_query(question)


@pytest.mark.parametrize(
    "question",
    [
        "Bộ KH&CN muốn Đại sứ quán giúp kết nối với các cơ quan Nhật Bản trong những lĩnh vực quản lý nào?",
        "A small Vietnamese business needs help with technology transfer and protecting its intellectual "
        "property. What support did Vietnam ask WIPO for?",
        "Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?",
        "EMB-AI hỗ trợ kết nối gì?",
        "Việt Nam hợp tác với Pháp về những lĩnh vực nào?",
        "Công ty chúng tôi muốn tìm đối tác ở Pháp, bắt đầu từ đâu?",  # no Japan: not this finder
        "",
    ],
)
def test_fact_questions_are_not_routed(question):
    assert not is_chat_connection_query(question)


def test_only_gold_connection_questions_are_routed():
    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines()]
    routed = {r["id"] for r in rows if is_chat_connection_query(r["question"])}
    assert routed and all(r["category"] == "connection" or not r["answerable"] for r in rows if r["id"] in routed)


def test_connection_question_about_a_japanese_city_no_document_names_is_not_routed(pipeline):
    # Recognised as a connection question, but the documents name no office in Nagoya: the ordinary
    # answer (a refusal here) is the honest one, not a list of contacts elsewhere.
    question = "Which offices in Nagoya can help Vietnamese SMEs find business partners?"
    assert is_chat_connection_query(question)
    answer = pipeline.ask(question)
    assert f"{HEADERS['en']['who']}:" not in answer.text.splitlines()
    osaka = pipeline.ask("Which offices in Osaka can help Vietnamese SMEs find business partners?")
    assert f"{HEADERS['en']['who']}:" in osaka.text.splitlines()


@pytest.mark.parametrize(
    ("question", "sector", "province"),
    [
        (SEAFOOD_VI, "thủy sản", "Nghệ An"),
        (SEAFOOD_ND, "thuy san", "nghe an"),
        (SEAFOOD_EN, "seafood", "Nghệ An"),
        (PLACEHOLDER_VI, "S", "P"),
        ("Our seafood company wants Japanese partners. Where do we start?", "seafood", ""),
        ("Công ty tôi hoạt động trong lĩnh vực chế biến gỗ tại Bình Dương, muốn tìm đối tác Nhật", "chế biến gỗ", ""),
        ("A small Vietnamese company wants Japanese partners", "", ""),
    ],
)
def test_sector_and_province_as_typed(question, sector, province):
    assert sector_phrase(question) == sector
    assert province_phrase(question) == province


# ---------------------------------------------------------------- through the Pipeline


def _check_inline_citations(answer):
    """Every listed line ends with [n] markers of citations the Answer carries, whose chunks hold the quotes."""
    ns = [c.n for c in answer.citations]
    assert ns == list(range(1, len(ns) + 1)) and ns
    items = [line for line in answer.text.splitlines() if line.startswith("- ")]
    assert items
    for line in items:
        markers = re.findall(r"\[(\d+)\]$", line)
        assert markers and int(markers[0]) in ns, line
    for c in answer.citations:
        assert all(q.strip("…") in c.chunk.text for q in c.quote.split(" … "))
    assert {c.chunk.chunk_id for c in answer.citations} <= {h.chunk.chunk_id for h in answer.hits}


def test_vietnamese_connection_question_gets_the_structured_answer(pipeline):
    answer = pipeline.ask(SEAFOOD_VI)
    assert answer.backend == "extractive" and not answer.refused and answer.language == "vi"
    lines = answer.text.splitlines()
    assert lines[0] == "Tài liệu không đề cập riêng đến tỉnh Nghệ An; dưới đây là các đầu mối áp dụng toàn quốc."
    assert SECTOR_ABSENT_NOTE["vi"].format(sector="thủy sản") == lines[1]
    assert f"{HEADERS['vi']['who']}:" in lines and f"{HEADERS['vi']['next_steps']}:" in lines
    assert any(name in answer.text for name in NATIONAL)
    assert f"{HEADERS['vi']['sources']}:" not in lines  # the citations carry the sources
    assert "**" not in answer.text and "\\" not in answer.text  # plain text: interfaces escape it themselves
    _check_inline_citations(answer)
    from rag.render import answer_markdown

    shown = answer_markdown(answer)  # the chat's rendering: headers and items read as written
    assert f"{HEADERS['vi']['who']}:  \n\\- " in shown and "\\*\\*" not in shown


def test_unaccented_connection_question_names_the_sector_back(pipeline):
    answer = pipeline.ask(SEAFOOD_ND)
    assert answer.language == "vi" and not answer.refused
    assert SECTOR_ABSENT_NOTE["vi"].format(sector="thủy sản") in answer.text  # shown with its tones
    assert "Nghệ An" in answer.text.splitlines()[0]
    _check_inline_citations(answer)


def test_english_connection_question_gets_english_sections_and_the_seafood_note(pipeline):
    events = list(pipeline.stream(SEAFOOD_EN))
    assert [e.kind for e in events] == ["final"]
    answer = events[0].answer
    assert answer.language == "en" and not answer.refused
    assert "The documents say nothing about seafood / thủy sản" in answer.text
    assert "The documents do not mention Nghe An province specifically" in answer.text
    assert f"{HEADERS['en']['who']}:" in answer.text.splitlines()
    assert not any(h in answer.text for h in HEADERS["vi"].values())
    assert any(name in answer.text for name in NATIONAL_EN)
    _check_inline_citations(answer)


def test_placeholder_province_and_sector_are_named_back(pipeline):
    answer = pipeline.ask(PLACEHOLDER_VI)
    assert "Tài liệu không đề cập riêng đến P;" in answer.text
    assert SECTOR_ABSENT_NOTE["vi"].format(sector="S") in answer.text
    _check_inline_citations(answer)


def test_known_sector_follow_up_keeps_the_province(pipeline):
    history = [Turn(SEAFOOD_VI, "…")]
    answer = pipeline.ask("Còn ngành bán dẫn thì sao?", history=history)
    assert "Tài liệu không đề cập riêng đến tỉnh Nghệ An" in answer.text  # carried over
    assert "thủy sản" not in answer.text  # this turn's sector replaces the previous one
    sectors = answer.text.split(f"{HEADERS['vi']['sectors']}:")[1].split("\n\n")[0]
    assert "Bán dẫn" in sectors.splitlines()[1]
    _check_inline_citations(answer)


def test_connections_can_be_turned_off_and_other_questions_are_untouched(pipeline):
    plain = pipeline.ask(SEAFOOD_VI, connections=False)
    assert f"{HEADERS['vi']['who']}:" not in plain.text
    fact = pipeline.ask("Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?")
    assert fact.text.startswith("Theo các tài liệu:")


def test_llm_backend_also_gets_the_structured_answer_without_calling_the_model(pipeline):
    with ScriptedLLM() as server:
        llm = OpenAICompatibleClient(server.base_url, server.model, read_timeout=5.0, max_retries=0)
        p = Pipeline(pipeline.settings, pipeline.loaded, pipeline.index, pipeline.lexicon, llm)
        answer = p.ask(SEAFOOD_EN)
        assert server.chat_requests == []
    assert answer.backend == "extractive" and "seafood" in answer.text
    _check_inline_citations(answer)


# ---------------------------------------------------------------- the finder's guarantees (Connections tab too)


def test_unknown_sector_from_the_dropdown_is_named_back(pipeline):
    vi = build_connection_answer(pipeline, None, province="Nghệ An", sector="thủy sản")
    assert vi.sector == "" and vi.sector_asked == "thủy sản"
    assert vi.sector_note == SECTOR_ABSENT_NOTE["vi"].format(sector="thủy sản")
    assert render_markdown(vi).splitlines()[1:3] == ["", f"> {vi.sector_note}"]
    en = build_connection_answer(pipeline, None, sector="seafood", lang="en")
    assert en.sector_note == "The documents say nothing about seafood / thủy sản; below are contact points that apply to all sectors."
    unknown_place = build_connection_answer(pipeline, None, province="Xyz", sector="semiconductors")
    assert "Xyz" in unknown_place.province_note and unknown_place.sector_note == ""


def test_a_sector_whose_words_occur_is_matched_on_words(pipeline):
    # 'vắc xin' is a known sector; 'tài nguyên' is not, but the documents do use the words.
    answer = build_connection_answer(pipeline, None, sector="tài nguyên")
    assert answer.sector_note.startswith("“tài nguyên” không thuộc danh mục lĩnh vực")


@pytest.mark.parametrize(
    "sector", ["semiconductors", "big_data", "education_training", "standards_metrology_quality", "smart_city"]
)
def test_a_sector_tag_is_shown_only_with_a_quote_naming_that_sector(pipeline, sector):
    answer = build_connection_answer(pipeline, None, sector=sector)
    for item in answer.sectors:
        quoted = [m for m in find_mentions(item.quote) if m.kind == "sectors"]
        for entity in item.entity.split("|"):
            strong = [m for m in quoted if m.canonical == entity
                      and _fold(m.surface) not in _WEAK_SECTOR_SURFACES.get(entity, ())]
            assert strong, (entity, item.quote)


def test_a_provinces_items_all_name_the_province(pipeline):
    answer = build_connection_answer(pipeline, None, province="Hà Nội")
    assert answer.local and answer.province_note == ""
    for item in answer.local:
        assert any(m.kind == "places_vn" and m.canonical.endswith("Hà Nội") for m in find_mentions(item.quote)), item
    text = render_markdown(answer)
    assert text.startswith("**Tại Hà Nội**")
    english = render_markdown(answer, "en").splitlines()
    assert english.index("**In Ha Noi**") < english.index(f"**{HEADERS['en']['who']}**")
