"""The EN<->VI lexicon: inflected English words find their base entry."""

from rag.lexicon import Lexicon, default_lexicon


def test_inflected_english_words_find_their_base_entry():
    exp = default_lexicon().expand("Vietnamese companies operating there agreed on Basic Sciences")
    assert {"doanh nghiệp Việt Nam", "hoạt động", "đồng ý", "khoa học cơ bản"} <= set(exp.vietnamese), exp.vietnamese
    assert "operating" in exp.matched and "agreed" in exp.matched


def test_only_english_inflections_are_stripped():
    lex = Lexicon([("company", "công ty"), ("cost", "chi phí"), ("host", "tổ chức")])
    assert lex.expand("costs").vietnamese == ("chi phí",)
    assert lex.expand("companies").vietnamese == ("công ty",)
    assert lex.expand("hosted").vietnamese == ("tổ chức",)
    # No Vietnamese syllable ends in -s, -ed or -ing; other words are left as they are.
    assert lex.expand("costa hostel").leftover == ("costa", "hostel")


def test_a_phrase_written_with_tones_matches_only_those_tones():
    """'Nhân dịp' (on the occasion) is not 'nhận' (receive); 'tích cực' (actively) holds no 'Cục'
    (department); without tones both still match, and tone placement does not matter ('hoà' = 'hòa')."""
    lexicon = Lexicon([("receive", "nhận"), ("department", "Cục"), ("peace", "hòa bình")])
    assert lexicon.expand("Nhân dịp đó ứng dụng nào được ra mắt?").matched == ()
    assert lexicon.expand("thảo luận tích cực").matched == ()
    assert lexicon.expand("nhan dip do").matched == ("nhan",)
    assert lexicon.expand("Bộ đã nhận thư").matched == ("nhận",)
    assert lexicon.expand("Cục Sở hữu trí tuệ").matched == ("Cục",)
    assert lexicon.expand("vì hoà bình").matched == ("hoà bình",)
