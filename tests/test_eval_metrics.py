"""eval.metrics against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import unicodedata

import pytest

from eval import metrics as M

F, T = False, True
LOG2_3 = math.log2(3)  # 1.5849625
LOG2_5 = math.log2(5)  # 2.3219281


# ------------------------------------------------------------------------------ matching

def test_normalize_for_match_nfc_lowercase_whitespace():
    assert M.normalize_for_match("  Thứ  trưởng\nNguyễn\tHoàng ") == "thứ trưởng nguyễn hoàng"
    assert M.normalize_for_match(unicodedata.normalize("NFD", "Hòa Lạc")) == "hòa lạc"
    assert unicodedata.is_normalized("NFC", M.normalize_for_match(unicodedata.normalize("NFD", "Đổi mới sáng tạo")))
    assert M.normalize_for_match("KH&CN") == "kh&cn"
    assert M.normalize_for_match("") == ""
    assert M.normalize_for_match(" \n ") == ""


def test_passage_is_relevant():
    passage = "Tại buổi làm việc, Thứ trưởng\nNguyễn  Hoàng Giang gửi lời cám ơn Đại sứ quán."
    assert M.passage_is_relevant(passage, ["thứ trưởng nguyễn hoàng giang"])  # case and whitespace differ
    assert M.passage_is_relevant(unicodedata.normalize("NFD", passage), ["Hoàng Giang"])  # NFD passage
    assert M.passage_is_relevant(passage, ["không có", "gửi lời cám ơn"])  # any one phrase is enough
    assert not M.passage_is_relevant(passage, ["Phạm Quang Hiệu"])
    assert not M.passage_is_relevant(passage, [])  # no evidence: nothing proves relevance
    assert not M.passage_is_relevant(passage, ["", "  "])  # an empty phrase must not match everything
    assert not M.passage_is_relevant("", ["Hoàng Giang"])


# ------------------------------------------------------------------------------ ranking

def test_hit_at_k():
    rel = [F, T, F, T]
    assert M.hit_at_k(rel, 1) == 0.0  # top-1 is [F]
    assert M.hit_at_k(rel, 2) == 1.0  # [F, T]
    assert M.hit_at_k(rel, 10) == 1.0  # k beyond the list: the whole list
    assert M.hit_at_k([F, F, F], 3) == 0.0
    assert M.hit_at_k([], 5) == 0.0
    with pytest.raises(ValueError):
        M.hit_at_k(rel, 0)


def test_recall_at_k_passage_relevance_form():
    rel = [F, T, F, T]  # 2 relevant passages in the candidate pool
    assert M.recall_at_k(rel, 1) == 0.0  # 0 of 2
    assert M.recall_at_k(rel, 2) == 0.5  # 1 of 2
    assert M.recall_at_k(rel, 4) == 1.0  # 2 of 2
    assert M.recall_at_k(rel, 2, total_relevant=4) == 0.25  # 1 of 4 known relevant
    assert M.recall_at_k([T, F, T], 10) == 1.0  # k beyond the list: 2 of 2
    assert M.recall_at_k([F, F], 2) == 0.0  # nothing relevant: 0, not a division by zero
    assert M.recall_at_k([], 3) == 0.0
    assert M.recall_at_k([T, T], 2, total_relevant=1) == 1.0  # capped at 1
    with pytest.raises(ValueError):
        M.recall_at_k(rel, 0)


def test_recall_at_k_evidence_form():
    passages = ["Không liên quan.", "x Evidence ONE y", "evidence two ở đây", "evidence one again"]
    evidence = ["evidence one", "Evidence two", "evidence three"]  # 3 distinct phrases
    assert M.recall_at_k(passages, evidence, 1) == 0.0  # none of the 3 in passage 1
    assert M.recall_at_k(passages, evidence, 2) == pytest.approx(1 / 3)  # "one" found
    assert M.recall_at_k(passages, evidence, 3) == pytest.approx(2 / 3)  # "one", "two"
    assert M.recall_at_k(passages, evidence, 10) == pytest.approx(2 / 3)  # "three" is never retrieved
    assert M.evidence_recall_at_k(passages, evidence, 3) == pytest.approx(2 / 3)
    # duplicate phrases (after normalisation) count once: {"evidence one"} -> found at rank 2
    assert M.evidence_recall_at_k(passages, ["evidence one", "EVIDENCE  one"], 2) == 1.0
    assert M.evidence_recall_at_k(passages, [], 5) == 0.0
    assert M.evidence_recall_at_k([], evidence, 5) == 0.0


def test_reciprocal_rank():
    assert M.reciprocal_rank([F, F, T, T]) == pytest.approx(1 / 3)  # first relevant at rank 3
    assert M.reciprocal_rank([T, F]) == 1.0
    assert M.reciprocal_rank([F, T]) == 0.5
    assert M.reciprocal_rank([F, F]) == 0.0
    assert M.reciprocal_rank([]) == 0.0


def test_ndcg_at_k():
    # [F,T,F,T] at k=4: DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    #                   IDCG (2 relevant first) = 1/log2(2) + 1/log2(3) = 1 + 0.63093 = 1.63093  -> 0.650921
    expected = (1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3)
    assert expected == pytest.approx(0.650921, abs=1e-6)
    assert M.ndcg_at_k([F, T, F, T], 4) == pytest.approx(expected)
    # same list at k=2: DCG = 1/log2(3) = 0.63093; IDCG = 1 + 1/log2(3) (2 relevant known) -> 0.386853
    assert M.ndcg_at_k([F, T, F, T], 2) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert M.ndcg_at_k([F, T, F, T], 2) == pytest.approx(0.386853, abs=1e-6)
    assert M.ndcg_at_k([T, T, F, F], 4) == 1.0  # already ideal
    assert M.ndcg_at_k([F, T], 2) == pytest.approx(1 / LOG2_3)  # 0.63093 / 1
    assert M.ndcg_at_k([F, F, T], 2) == 0.0  # the relevant passage is below the cut-off
    assert M.ndcg_at_k([T, F], 10) == 1.0  # k beyond the list
    assert M.ndcg_at_k([F, F, F], 3) == 0.0  # nothing relevant
    assert M.ndcg_at_k([], 10) == 0.0
    # 3 relevant exist, 2 retrieved: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.13093
    assert M.ndcg_at_k([T, F, T], 3, total_relevant=3) == pytest.approx(1.5 / (1 + 1 / LOG2_3 + 0.5))
    assert M.ndcg_at_k([T, F, T], 3, total_relevant=3) == pytest.approx(0.703918, abs=1e-6)
    with pytest.raises(ValueError):
        M.ndcg_at_k([T], 0)


# ------------------------------------------------------------------------------ answers

def test_citation_precision():
    cited = ["… Chương trình Hubert Curien (Chương trình H) …", "Không liên quan.", "Một đoạn khác."]
    assert M.citation_precision(cited, ["hubert curien"]) == pytest.approx(1 / 3)  # 1 of 3 cited passages
    assert M.citation_precision(cited[:1], ["Hubert Curien"]) == 1.0
    assert M.citation_precision(cited[1:], ["Hubert Curien"]) == 0.0
    assert M.citation_precision([], ["Hubert Curien"]) is None  # nothing cited: not measurable


def test_evidence_coverage():
    answer = "Osaka có nhiều DOANH NGHIỆP nhỏ và vừa thành công [1]."
    assert M.evidence_coverage(answer, ["doanh nghiệp nhỏ và vừa", "Tổng Lãnh sự quán"]) == 0.5  # 1 of 2
    assert M.evidence_coverage(answer, ["doanh nghiệp nhỏ và vừa", "Doanh  nghiệp nhỏ và vừa"]) == 1.0  # 1 distinct
    assert M.evidence_coverage("", ["doanh nghiệp nhỏ và vừa"]) == 0.0  # refused / empty answer
    assert M.evidence_coverage(answer, []) is None  # unanswerable: no evidence to cover


def test_refusal_correct_truth_table():
    assert M.refusal_correct(refused=True, answerable=False) is True
    assert M.refusal_correct(refused=False, answerable=True) is True
    assert M.refusal_correct(refused=True, answerable=True) is False  # false refusal
    assert M.refusal_correct(refused=False, answerable=False) is False  # answered the unanswerable
    # symmetric, so (answerable, refused) positional calls give the same result
    for a in (True, False):
        for b in (True, False):
            assert M.refusal_correct(a, b) == M.refusal_correct(b, a)


# ------------------------------------------------------------------------------ aggregation

def test_percentile_linear_interpolation():
    values = [4, 1, 3, 2]  # sorted: 1 2 3 4
    assert M.percentile(values, 50) == 2.5  # pos = 3 * 0.5 = 1.5 -> 2 + 0.5 * (3 - 2)
    assert M.percentile(values, 95) == pytest.approx(3.85)  # pos = 2.85 -> 3 + 0.85 * (4 - 3)
    assert M.percentile(values, 0) == 1.0
    assert M.percentile(values, 100) == 4.0
    assert M.percentile([10, 20], 25) == 12.5  # pos = 0.25 -> 10 + 0.25 * 10
    assert M.percentile([7], 95) == 7.0
    with pytest.raises(ValueError):
        M.percentile([], 50)
    with pytest.raises(ValueError):
        M.percentile([1, 2], 101)


def test_percentile_matches_numpy_default():
    np = pytest.importorskip("numpy")
    values = [12.5, 3.0, 7.25, 100.0, 42.0, 0.5, 9.0]
    for p in (0, 5, 25, 50, 90, 95, 99, 100):
        assert M.percentile(values, p) == pytest.approx(float(np.percentile(values, p)))


def test_aggregate_flat_rows_by_lang():
    rows = [
        {"id": "q1", "lang": "vi", "hit@5": 1.0, "mrr": 0.5, "citation_precision": None, "refusal_correct": True},
        {"id": "q2", "lang": "vi", "hit@5": 0.0, "mrr": 0.0, "citation_precision": 1.0, "refusal_correct": False},
        {"id": "q3", "lang": "en", "hit@5": 1.0, "mrr": 1.0, "citation_precision": None, "refusal_correct": True},
    ]
    out = M.aggregate(rows, "lang")
    assert out["by"] == "lang"
    overall = out["overall"]
    assert overall["n"] == 3
    assert overall["hit@5"] == pytest.approx(2 / 3)  # (1 + 0 + 1) / 3
    assert overall["mrr"] == pytest.approx(0.5)  # (0.5 + 0 + 1) / 3
    assert overall["citation_precision"] == 1.0  # None ignored: only q2 counts
    assert overall["refusal_correct"] == pytest.approx(2 / 3)  # booleans as 0/1
    assert "id" not in overall and "lang" not in overall
    vi, en = out["groups"]["vi"], out["groups"]["en"]
    assert vi == {"n": 2, "hit@5": 0.5, "mrr": 0.25, "citation_precision": 1.0, "refusal_correct": 0.5}
    assert en == {"n": 1, "hit@5": 1.0, "mrr": 1.0, "citation_precision": None, "refusal_correct": 1.0}
    assert list(out["groups"]) == ["vi", "en"]


def test_aggregate_runner_rows_and_options():
    rows = [
        {"id": "a", "gold": {"category": "fact"}, "metrics": {"hit@1": 1.0, "evidence_coverage": 0.5}},
        {"id": "b", "gold": {"category": "fact"}, "metrics": {"hit@1": 0.0, "evidence_coverage": None}},
        {"id": "c", "gold": {"category": "unanswerable"}, "metrics": {"hit@1": None, "evidence_coverage": None}},
    ]
    out = M.aggregate(rows, by="category")
    assert out["overall"] == {"n": 3, "hit@1": 0.5, "evidence_coverage": 0.5}  # hit@1: (1 + 0) / 2
    assert out["groups"]["fact"] == {"n": 2, "hit@1": 0.5, "evidence_coverage": 0.5}
    assert out["groups"]["unanswerable"] == {"n": 1, "hit@1": None, "evidence_coverage": None}
    only = M.aggregate(rows, metrics=["hit@1"])
    assert only == {"by": None, "overall": {"n": 3, "hit@1": 0.5}, "groups": {}}
    assert M.aggregate([], "lang") == {"by": "lang", "overall": {"n": 0}, "groups": {}}
