"""Language through the whole chain: names do not flip the language of a question, and Vietnamese
follow-ups with pronouns ("nó", "ông ấy", "bà ấy", "họ", "chương trình này") carry the topic over
like English "it / he / she / they" — offline, and without disturbing the LLM condensation path."""

from __future__ import annotations

import pytest

from rag.answer import FRAME, REFUSAL
from rag.chain import Pipeline, Turn, condense_offline, is_follow_up
from rag.llm import OpenAICompatibleClient
from tests.scripted_llm import ScriptedLLM

# ---------------------------------------------------------------- names do not decide the language


@pytest.mark.parametrize(
    "question",
    [
        "What did the People's Committee of Đà Nẵng sign with Japan in 2024?",
        "Which agreements did a firm in Thành phố Hồ Chí Minh sign with Japanese partners?",
        "Where did Minister Huỳnh Thành Đạt speak at the 63rd WIPO General Assembly?",
    ],
)
def test_english_question_with_vietnamese_names_gets_english_frame_lexicon_and_refusal(pipeline, question):
    plan = pipeline.retrieve(question).plan
    assert plan.language == "en"
    assert plan.translation and plan.translated_tokens  # the EN->VI lexicon was applied
    answer = pipeline.ask(question)
    assert answer.language == "en"
    if answer.refused:
        assert answer.text == REFUSAL["en"]
    else:
        assert answer.text.startswith(FRAME["en"])


def test_unanswerable_english_question_about_da_nang_is_refused_in_english(pipeline):
    answer = pipeline.ask("What did the People's Committee of Đà Nẵng sign with Japan in 2024?")
    assert answer.refused and answer.text == REFUSAL["en"]


@pytest.mark.parametrize(
    "question",
    ["VJOIN là mạng lưới gì?", "Japan Innovation Network hỗ trợ gì cho doanh nghiệp Việt Nam?",
     "Tại STS forum, Thứ trưởng Nguyễn Hoàng Giang đã nói gì?"],
)
def test_vietnamese_question_quoting_english_names_is_answered_in_vietnamese(pipeline, question):
    answer = pipeline.ask(question)
    assert answer.language == "vi"
    assert answer.text == REFUSAL["vi"] if answer.refused else answer.text.startswith(FRAME["vi"])


# ---------------------------------------------------------------- Vietnamese follow-ups

EMB_AI_VI = "EMB-AI là gì?"
GIANG_VI = "Thứ trưởng Nguyễn Hoàng Giang làm việc với Đại sứ quán Việt Nam tại Nhật Bản khi nào?"


@pytest.mark.parametrize(
    "question",
    [
        "Nó được ra mắt khi nào?",
        "Ông ấy đã cảm ơn ai?",
        "Bà ấy nói gì?",
        "Họ hợp tác trong lĩnh vực nào?",
        "Chương trình này do ai tài trợ?",
        "no duoc ra mat khi nao",
        "ong ay da cam on ai",
        "ba ay noi gi",
        "ho hop tac trong linh vuc nao",
        "chuong trinh nay do ai tai tro",
        "When was it launched?",
        "Who chaired it?",
        "What position did he hold when he met Vietnamese scientists in Japan in 2025?",
        "Các đại diện đó được kỳ vọng góp phần vào việc gì?",
    ],
)
def test_pronoun_follow_ups_are_joined_to_the_previous_question(question):
    assert is_follow_up(question)
    history = [Turn(EMB_AI_VI, "…")]
    assert condense_offline(question, history) == f"{EMB_AI_VI} {question}"


@pytest.mark.parametrize(
    "question",
    [
        "Văn phòng đại diện KH&CN ở TP Hồ Chí Minh làm gì?",  # 'Hồ' is not 'họ'
        "van phong o tp ho chi minh lam gi",  # nor is 'ho' in 'ho chi minh'
        "Hồ sơ xin visa kỹ sư cần giấy tờ gì?",
        "Hiện nay có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?",  # 'nay' (now) is not 'này'
        "The Deputy PM visited which city in 2025?",  # English 'the' is not 'thế'
        "How many Vietnamese IT engineers work in Japan?",
    ],
)
def test_standalone_questions_are_not_follow_ups(question):
    assert not is_follow_up(question)
    assert condense_offline(question, [Turn(EMB_AI_VI, "…")]) == question


def test_a_chain_of_follow_ups_keeps_the_first_topic():
    history = [Turn(EMB_AI_VI, "…"), Turn("Nó được ra mắt khi nào?", "…")]
    assert condense_offline("Còn ở Osaka thì sao?", history) == f"{EMB_AI_VI} Nó được ra mắt khi nào? Còn ở Osaka thì sao?"


@pytest.mark.parametrize(
    ("previous", "question", "topic"),
    [
        (EMB_AI_VI, "Nó do cơ quan nào phát triển?", "EMB-AI"),
        ("emb-ai la gi", "no do co quan nao phat trien", "EMB-AI"),
        ("Chương trình EMB-AI là gì?", "Chương trình này phục vụ ai?", "EMB-AI"),
        ("chuong trinh EMB-AI la gi", "chuong trinh nay phuc vu ai", "EMB-AI"),
        ("Tổng giám đốc WIPO là ai?", "Ông ấy gặp ai?", "WIPO"),
        ("tong giam doc wipo la ai", "ong ay gap ai", "WIPO"),
    ],
)
def test_offline_pronoun_follow_up_retrieves_the_topic(pipeline, previous, question, topic):
    alone = pipeline.ask(question)
    followed = pipeline.ask(question, history=[Turn(previous, "…")])

    def first_rank(answer) -> int:
        return next((i for i, h in enumerate(answer.hits) if topic in h.chunk.text), len(answer.hits))

    assert topic in followed.hits[0].chunk.text  # the follow-up finds the topic first
    assert first_rank(followed) <= first_rank(alone)  # and never ranks it lower than the bare pronoun does
    assert followed.question == question and followed.language == "vi"


def test_llm_condensation_gets_the_raw_vietnamese_follow_up(pipeline):
    with ScriptedLLM() as server:
        llm = OpenAICompatibleClient(server.base_url, server.model, read_timeout=5.0, max_retries=0)
        p = Pipeline(pipeline.settings, pipeline.loaded, pipeline.index, pipeline.lexicon, llm)
        server.enqueue_reply("Thứ trưởng Nguyễn Hoàng Giang đã cảm ơn ai tại Đại sứ quán Việt Nam tại Nhật Bản?")
        server.enqueue_reply("Thứ trưởng cảm ơn Đại sứ Phạm Quang Hiệu [1].")
        p.ask("Ông ấy đã cảm ơn ai?", history=[Turn(GIANG_VI, "…")])
        condense, generate = server.chat_requests
    prompt = condense.body["messages"][0]["content"]
    assert "Ông ấy đã cảm ơn ai?" in prompt and GIANG_VI in prompt
    assert f"{GIANG_VI} Ông ấy" not in prompt  # the offline join is not what the LLM is asked to rewrite
    assert "Thứ trưởng Nguyễn Hoàng Giang đã cảm ơn ai tại Đại sứ quán" in generate.body["messages"][1]["content"]


def test_english_frame_around_a_vietnamese_name_with_lower_case_words_is_english():
    from rag.text import detect_language

    assert detect_language("Where is the Trung tâm Đổi mới sáng tạo Quốc gia (NIC) adding new facilities?") == "en"
    # A Vietnamese question that merely quotes an English word stays Vietnamese.
    assert detect_language("Trung tâm Đổi mới sáng tạo Quốc gia mở rộng cơ sở mới ở đâu?") == "vi"
