import unicodedata

import pytest

from rag.text import (
    detect_language,
    nfc,
    query_tokens,
    segment_unaccented,
    split_sentences,
    strip_diacritics,
)


def test_nfc_composes_decomposed_vietnamese():
    decomposed = unicodedata.normalize("NFD", "Đổi mới sáng tạo")
    assert decomposed != "Đổi mới sáng tạo"
    assert nfc(decomposed) == "Đổi mới sáng tạo"


def test_strip_diacritics_handles_d_bar_and_tones():
    assert strip_diacritics("Đại sứ quán Việt Nam tại Nhật Bản") == "Dai su quan Viet Nam tai Nhat Ban"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?", "vi"),
        ("ky su cong nghe thong tin o Nhat bao nhieu nguoi", "vi_nodiac"),
        ("EMB-AI la gi", "vi_nodiac"),
        ("doanh nghiep o Phu Tho muon hop tac ban dan voi Nhat", "vi_nodiac"),
        ("How many Vietnamese IT engineers work in Japan?", "en"),
        ("Which offices can help a provincial SME find partners in Osaka?", "en"),
        ("who is the ambassador", "en"),
        ("dien dan sts 2023 to chuc o dau", "vi_nodiac"),  # 'to' is English too, but 'o', 'dau' are not
    ],
)
def test_detect_language(question, expected):
    assert detect_language(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "What did the People's Committee of Đà Nẵng sign with Japan?",
        "Which agreements did a firm in Thành phố Hồ Chí Minh sign with Japanese partners?",
        "Who did Minister Nguyễn Chí Dũng meet in Japan on 17 December 2023?",
        "What did Thứ trưởng Nguyễn Hoàng Giang say in Osaka?",
        "How large was the JICA loan for the NIC campus in Hòa Lạc?",
        "Tell me about Trường Đại học Bách khoa Hà Nội",
        "what did the people's committee of đà nẵng sign",  # all lower case: English still dominates
        "What is the role of the đầu mối?",
    ],
)
def test_english_questions_spelling_vietnamese_names_are_english(question):
    assert detect_language(question) == "en"


@pytest.mark.parametrize(
    "question",
    [
        "Japan Innovation Network là gì?",
        "JICA hỗ trợ gì cho Việt Nam?",
        "Sự kiện Japan Tech Day diễn ra ở đâu?",
        "Diễn đàn Science and Technology in Society tổ chức ở đâu?",
        'Dự án "Science and Technology in Society" là gì?',
        "Vietnam-Japan Innovation Network (VJIN) có vai trò gì?",
        "Ủy ban nhân dân Đà Nẵng đã ký gì?",
        "Đà Nẵng có gì?",
    ],
)
def test_vietnamese_questions_quoting_english_names_stay_vietnamese(question):
    assert detect_language(question) == "vi"


@pytest.mark.parametrize(
    "question",
    ["AI Center do ai thanh lap", "Japan Innovation Network la gi", "chuong trinh nay bat dau khi nao", "ho la ai"],
)
def test_unaccented_vietnamese_with_english_names_stays_unaccented(question):
    assert detect_language(question) == "vi_nodiac"


def test_gold_questions_are_detected_as_labelled():
    """Every gold question (including the mixed ones) is detected as its label says."""
    import json
    from pathlib import Path

    gold = Path(__file__).resolve().parent.parent / "eval" / "datasets" / "gold.jsonl"
    wrong = []
    for line in gold.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        expected = "en" if row["lang"] == "en" else "vi_nodiac" if row["variant"] == "no_diacritics" else "vi"
        if detect_language(row["question"]) != expected:
            wrong.append((expected, row["question"]))
    assert not wrong


def test_split_sentences_keeps_abbreviations_and_numbers():
    text = "Hơn 1.500 đại biểu tham dự. TP. Hồ Chí Minh là thành phố lớn! Còn Hà Nội?\nDòng mới không có dấu chấm"
    sentences = [text[s:e] for s, e in split_sentences(text)]
    assert sentences == [
        "Hơn 1.500 đại biểu tham dự.",
        "TP. Hồ Chí Minh là thành phố lớn!",
        "Còn Hà Nội?",
        "Dòng mới không có dấu chấm",
    ]


def test_query_tokens_fold_acronyms_and_keep_upper_case_ai():
    tokens = query_tokens("KH&CN về AI là gì?")
    assert "khcn" in tokens
    assert "ai" in tokens  # 'AI' the acronym survives although 'ai' ('who') is a stopword
    assert "là" not in tokens and "gì" not in tokens


def test_unaccented_segmentation_prefers_attested_compounds():
    words = segment_unaccented("ky su cong nghe thong tin viet nam o nhat", frozenset({("viet", "nam")}))
    assert "ky_su" in words and "viet_nam" in words
    assert segment_unaccented("dan so cua osaka")[0] == "dan_so"
