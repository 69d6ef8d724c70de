"""Chat filters: widget values -> Filters, and a filtered chat answer cites only the chosen outlet."""

import pytest

from rag.ui import ChatHandler, build_filters


def test_widget_values_become_filters():
    f = build_filters(["most.gov.vn"], ["dien-dan-sts-kyoto-2023"], " 2023-01-01 ", "")
    assert f.sources == ("most.gov.vn",) and f.doc_ids == ("dien-dan-sts-kyoto-2023",)
    assert f.date_from == "2023-01-01" and f.date_to == ""
    assert build_filters(None, [], "", "") is None
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        build_filters(None, None, "01/10/2023", "")
    with pytest.raises(ValueError, match="2023-13-01"):
        build_filters(None, None, "", "2023-13-01")


def test_filtered_chat_answer_uses_only_the_chosen_outlet(service):
    handler = ChatHandler(service)
    question = "Hợp tác khoa học và công nghệ với Nhật Bản"
    *_, unfiltered = handler.reply_stream(question, [])
    *_, filtered = handler.reply_stream(question, [], build_filters(["most.gov.vn"], None, "", ""))
    assert "most.gov.vn" in filtered
    for outlet in ("chinhphu.vn", "MPI", "Báo Tin Tức/TTXVN"):
        assert outlet not in filtered
    assert filtered != unfiltered
