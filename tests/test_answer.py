"""The extractive answerer: cited quotes for answerable questions, refusals for the rest."""

import re

import pytest

from rag.answer import REFUSAL, KeyTerm, missing_anchors


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


# --------------------------------------------------------------------------- at scale: distractors beside the seeds

# Hard negatives written like the news and encyclopaedia text they stand for: each holds a tempting wrong
# answer to a question the seeds cannot answer (same figure other year, same topic other country, same
# organisation other city), or competes with a seed sentence that does answer.
DISTRACTORS = {
    "oda-han-quoc.md": (
        "---\ntitle: \"Vốn ODA cho Việt Nam\"\ndate: \"2024-05-02\"\n---\n"
        "Năm 2016, Nhật Bản cam kết 1,7 tỷ USD vốn ODA cho Việt Nam để xây dựng hạ tầng giao thông.\n\n"
        "Hàn Quốc cam kết 500 triệu USD vốn ODA cho Việt Nam năm 2024, tập trung vào y tế và giáo dục.\n\n"
        "Các nhà tài trợ đánh giá cao hiệu quả sử dụng vốn của các dự án tại nhiều địa phương.\n"
    ),
    "dai-su-phap.md": (
        "---\ntitle: \"Quan hệ Việt Nam – Pháp\"\ndate: \"2023-03-10\"\n---\n"
        "Đại sứ Pháp tại Việt Nam Olivier Brochet đã làm việc với lãnh đạo thành phố Hà Nội về hợp tác văn hóa.\n\n"
        "Hai bên nhất trí tăng cường giao lưu nhân dân và hợp tác giáo dục trong thời gian tới.\n"
    ),
    "sts-2019.md": (
        "---\ntitle: \"Diễn đàn khoa học tại Tokyo\"\ndate: \"2019-10-07\"\n---\n"
        "Năm 2019, một diễn đàn khoa học tại Tokyo thu hút hơn 900 đại biểu đến từ 50 quốc gia.\n\n"
        "Các đại biểu thảo luận về trí tuệ nhân tạo, biến đổi khí hậu và y tế toàn cầu.\n"
    ),
    "tong-lanh-su-fukuoka.md": (
        "---\ntitle: \"Người Việt tại Fukuoka\"\ndate: \"2022-08-01\"\n---\n"
        "Cộng đồng người Việt tại Fukuoka tổ chức lễ hội văn hóa với sự tham gia của nhiều sinh viên.\n\n"
        "Lễ hội giới thiệu ẩm thực, âm nhạc và trang phục truyền thống của Việt Nam.\n"
    ),
    # A city of another prefecture's article: its figures are the city's, though the prefecture is named.
    "sakai.md": (
        "---\ntitle: \"Sakai, Osaka\"\ndate: \"2021-04-01\"\n---\n"
        "Sakai là một thành phố thuộc tỉnh Osaka, vùng Kinki, Nhật Bản.\n\n"
        "Thành phố có diện tích là 149,99 km², dân số là 832.287 người.\n"
    ),
    # A region's figure with the city named after it.
    "cac-vung.md": (
        "---\ntitle: \"Các vùng của Nhật Bản\"\ndate: \"2020-01-01\"\n---\n"
        "Vùng Kansai hay Kinki (trong đó có thủ đô cũ Kyoto, dân số: 22.755.030, thành phố lớn nhất: Osaka).\n\n"
        "=== Đại sứ Việt Nam tại Nhật Bản ===\n\n"
        "Mỗi năm có khoảng 3.000 sinh viên Việt Nam sang Nhật Bản du học theo các chương trình học bổng.\n\n"
        "Vùng Chubu có thành phố lớn nhất là Nagoya, trung tâm công nghiệp ô tô của Nhật Bản.\n"
    ),
}


@pytest.fixture(scope="module")
def scaled(tmp_path_factory, loaded_embedder):
    """A real index of the seed corpus plus the distractor documents above (kept out of corpus/)."""
    from tests.conftest import pipeline_beside_seeds

    return pipeline_beside_seeds(tmp_path_factory.mktemp("scaled"), loaded_embedder, DISTRACTORS)


@pytest.mark.parametrize(
    ("question", "lang"),
    [
        # A 2024 figure for Japan: the passage has a 2024 figure (Korea's) and a Japan figure (2016's).
        ("Nhật Bản cam kết bao nhiêu vốn ODA cho Việt Nam năm 2024?", "vi"),
        ("How much ODA did Japan commit to Vietnam in 2024?", "en"),
        # The seeds name Vietnam's ambassador to Japan; a distractor names France's ambassador to Vietnam.
        ("Đại sứ Việt Nam tại Pháp là ai?", "vi"),
        ("Who is Japan's ambassador to Vietnam?", "en"),
        ("dai su nhat ban tai viet nam la ai", "vi"),
        # The STS forum's 20th meeting drew 1,500 delegates in 2023; another forum drew 900 in 2019.
        ("Diễn đàn STS năm 2019 thu hút bao nhiêu đại biểu?", "vi"),
        # The seeds ask the consulate in Osaka for help; a distractor is about Vietnamese people in Fukuoka.
        ("Tổng Lãnh sự quán Việt Nam tại Fukuoka được đề nghị hỗ trợ những gì?", "vi"),
        # The Sakai article names Osaka; its population is Sakai's. The region's figure is the region's.
        ("Dân số của Osaka là bao nhiêu?", "vi"),
        ("dan so osaka bao nhieu nguoi", "vi"),
        ("What is the population of Osaka?", "en"),
        # 'học phí' (tuition), rare in the reference corpus, is in no passage: a count of students is not a fee.
        ("Học phí du học Nhật Bản một năm khoảng bao nhiêu?", "vi"),
        # The seeds' scientists are not named; the minister who met them is not the answer.
        ("Hai nhà khoa học đoạt giải Nobel Vật lý dự tọa đàm của UNESCO tên là gì?", "vi"),
    ],
)
def test_tempting_wrong_answers_are_refused(scaled, question, lang):
    answer = scaled.ask(question)
    assert answer.refused, answer.text
    assert answer.text == REFUSAL[lang] and answer.citations == ()


def test_the_seed_answer_still_wins_over_a_tempting_distractor(scaled):
    answer = scaled.ask("Hội nghị thường niên lần thứ 20 Diễn đàn STS thu hút bao nhiêu đại biểu?")
    assert not answer.refused, answer.text
    assert answer.citations[0].chunk.doc_id == "dien-dan-sts-kyoto-2023"
    lines = answer.text.splitlines()
    # The short answer leads, taken from the cited quote, with the source's date.
    assert lines[1].startswith("Trả lời: hơn 1.500 đại biểu [1]") and "tính đến 09/10/2023" in lines[1], lines
    assert "1.500 đại biểu" in answer.citations[0].quote
    _check_citations(answer)


def test_english_answers_lead_with_a_glossed_short_answer(scaled):
    answer = scaled.ask("How many Vietnamese IT engineers work in Japan?")
    assert not answer.refused, answer.text
    lines = answer.text.splitlines()
    assert lines[1].startswith("Answer: 5,000 kỹ sư"), lines  # English digit grouping, the quoted unit
    assert "as of 01/06/2025" in lines[1]
    assert "engineer" in lines[1].lower()  # the unit glossed through the lexicon
    assert any(line.startswith("Key terms: ") for line in lines)
    _check_citations(answer)


def test_relation_direction_is_checked():
    from rag.answer import relation_holds, relations

    rels = relations("Đại sứ Nhật Bản tại Việt Nam là ai?")
    assert len(rels) == 1
    assert not relation_holds(rels[0], "Đại sứ Việt Nam tại Nhật Bản Phạm Quang Hiệu")
    assert relation_holds(rels[0], "Đại sứ Nhật Bản tại Việt Nam Ito Naoki")
    assert relation_holds(relations("Who is Japan's ambassador to Vietnam?")[0], "Đại sứ Nhật Bản tại Việt Nam")


def test_term_weights_do_not_depend_on_the_index(scaled, pipeline):
    """The refusal boundary must not move when documents are added: same question, same weights."""
    from rag.answer import key_terms

    q = "Kỹ sư Việt Nam muốn sang Nhật làm việc cần xin loại visa nào?"
    small = key_terms(q, pipeline.lexicon, pipeline.index)
    big = key_terms(q, scaled.lexicon, scaled.index)
    assert [(t.surface, t.weight, t.anchor) for t in small] == [(t.surface, t.weight, t.anchor) for t in big]
    weights = {t.surface.lower(): t.weight for t in small}
    assert weights["visa"] > weights["làm việc"]  # rare in the reference corpus, so it counts more


def test_two_part_question_says_which_part_is_not_covered(pipeline):
    answer = pipeline.ask("EMB-AI là gì và do công ty nào phát triển?")
    assert not answer.refused, answer.text
    assert "EMB-AI" in answer.citations[0].quote
    assert "Tài liệu không nói về phần" in answer.text and "công ty nào phát triển" in answer.text


def test_short_answer_skips_dates_and_ordinals_when_counting():
    from rag.answer import short_answer

    sentence = "Từ ngày 01-03/10/2023, Hội nghị thường niên lần thứ 20 thu hút hơn 1.500 đại biểu từ 80 quốc gia."
    assert short_answer("number", sentence, "Hội nghị có bao nhiêu đại biểu?") == "hơn 1.500 đại biểu"
    assert short_answer("number", "Ngày 15/7/2022, hai bên ký 3 thỏa thuận.", "Ký bao nhiêu thỏa thuận?").startswith("3")


def test_a_heading_is_never_the_quote(scaled):
    """'=== Đại sứ Việt Nam tại Nhật Bản ===' labels a section; the seeds' sentence names the ambassador."""
    answer = scaled.ask("Who is Vietnam's ambassador to Japan?")
    assert not answer.refused, answer.text
    assert "==" not in answer.text
    assert "Phạm Quang Hiệu" in answer.citations[0].quote


@pytest.mark.parametrize(
    ("question", "short"),
    [
        # The title asked for follows the name ('… Nguyễn Hoàng Giang làm Trưởng đoàn').
        ("Ai làm trưởng đoàn Bộ KH&CN dự Diễn đàn STS ở Kyoto năm 2023?", "Nguyễn Hoàng Giang"),
        # 'Thứ trưởng Giang' is who asks, not who is asked about; the answer sentence is in the article's
        # fourth chunk, which does not repeat 'Kyoto' (the article's first chunk does).
        ("Bên lề hội nghị ở Kyoto, Thứ trưởng Giang đã gặp xã giao những ai?", "Hiroshi Komiyama"),
        # The figure counting what was asked (ministers), not the one in the sentence before (delegates);
        # '23' is not part of the question's '2023'.
        ("How many ministers took part in the STS forum's 2023 ministerial roundtable?", "23"),
        # 'October 2023' is written '01-03/10/2023' in the article.
        ("Which Japanese city hosted the 20th STS forum in October 2023?", "Kyoto"),
        # 'cơ sở' folds to two function words ('co so') yet is the term asked about.
        ("nic co co so o dau", "Hà Nội"),
    ],
)
def test_the_asked_thing_is_found(scaled, question, short):
    answer = scaled.ask(question)
    assert not answer.refused, answer.text
    assert short in answer.text.splitlines()[1] or short in answer.citations[0].quote, answer.text
    _check_citations(answer)


def test_a_later_sentence_is_tried_when_the_best_one_fails(pipeline):
    """The best-scoring sentence is about another meeting; the agreement with France is further down."""
    answer = pipeline.ask("Which French science programme did Vietnam agree to rejoin?")
    assert not answer.refused, answer.text
    assert any("Hubert Curien" in c.quote for c in answer.citations)


def test_every_cited_passage_holds_the_evidence(pipeline):
    """A further quote from another passage must answer on its own: 'Chiều 31/5, Phó Thủ tướng … gặp …'
    names the subject but adds nothing to what he proposed."""
    answer = pipeline.ask("Phó Thủ tướng muốn có một nền tảng chung để làm gì?")
    assert not answer.refused, answer.text
    assert all("nền tảng chung" in c.chunk.text for c in answer.citations), answer.text


def test_what_is_the_population_asks_for_a_number():
    from rag.answer import _has_month, answer_type

    assert answer_type("What is the population of Osaka?") == "number"
    assert answer_type("In which years did they win their Nobel Prizes?") == "date"
    assert answer_type("What position did he hold?") == ""
    assert _has_month("Từ ngày 01-03/10/2023, Đoàn công tác", "10")
    assert not _has_month("ngày 17/12/2023", "10") and not _has_month("năm 2010", "10")


def test_a_connection_answer_for_a_japanese_city_must_quote_an_office_there(scaled):
    """A distractor names Nagoya (a region's largest city): the connection finder's Osaka offices do not
    answer 'offices in Nagoya', so the ordinary answer refuses."""
    answer = scaled.ask("Which offices in Nagoya can help Vietnamese SMEs find business partners?")
    assert answer.refused, answer.text


def test_a_toned_word_is_not_its_toneless_function_word(pipeline):
    """'tải về' (download) folds to 'tai ve', as 'tại' (at) does: the second part is not covered by any
    sentence that merely says 'tại', so neither part is answered."""
    from rag.answer import coverage, key_terms

    terms = [t for t in key_terms("tải về ở đâu", pipeline.lexicon, pipeline.index) if t.toned]
    assert [t.toned for t in terms] == ["tải"]
    assert coverage(terms, "Đại sứ quán Việt Nam tại Nhật Bản") == 0.0
    assert coverage(terms, "Người dùng có thể tải ứng dụng trên App Store") == 1.0
    assert pipeline.ask("Ứng dụng EMB-AI do công ty nào phát triển và tải về ở đâu?").refused


def test_follow_up_year_may_come_from_the_passage_date(pipeline):
    """'… in 2025?' is answered by a sentence of a 2025 article that does not repeat the year."""
    answer = pipeline.ask("What position did he hold when he met Vietnamese scientists in Japan in 2025?")
    assert not answer.refused, answer.text
    assert "Phó Thủ tướng" in answer.citations[0].quote


def test_key_terms_for_names_and_phrases(pipeline):
    from rag.answer import KeyTerm, _missing_phrases, coverage, key_terms

    terms = key_terms("Which new technologies did Phó Thủ tướng Nguyễn Chí Dũng say Vietnam should cooperate on?",
                      pipeline.lexicon, pipeline.index)
    # A Vietnamese name with tones in an English question is one person, one anchor.
    assert any(t.surface == "Nguyễn Chí Dũng" and t.anchor for t in terms)
    # 'Vietnamese companies' is written 'doanh nghiệp … của Việt Nam'.
    companies = [t for t in key_terms("How many Vietnamese companies?", pipeline.lexicon, pipeline.index)
                 if "companies" in t.surface]
    assert coverage(companies, "hơn 70 doanh nghiệp và 5.000 kỹ sư của Việt Nam đang hoạt động") == 1.0
    # A one-word anchor found elsewhere in a document only where it is written as a name.
    france = KeyTerm("France", (("phap",),), 1.5, anchor=True)
    assert _missing_phrases([france], "xây dựng và thực thi pháp luật")
    assert not _missing_phrases([france], "Đại sứ Việt Nam tại Cộng hòa Pháp")


def test_a_rare_lexicon_term_must_be_in_the_document(scaled):
    """'Diễn đàn trí thức Việt Nam - Nhật Bản 2023' is named in the VJOIN article, which does not say where
    it was held; the STS article says 'Diễn đàn … 2023 … thành phố Kyoto' but nothing of intellectuals."""
    answer = scaled.ask("Diễn đàn trí thức Việt Nam - Nhật Bản 2023 được tổ chức ở thành phố nào?")
    assert answer.refused, answer.text


def test_japans_is_japan_and_not_scattered_syllables(pipeline):
    from rag.answer import key_terms, missing_anchors

    japans = [t for t in key_terms("chương trình khoa học nào của Nhật Bản?", pipeline.lexicon, pipeline.index)
              if t.anchor and t.scope == "place"]
    assert japans and ("nhat", "ban") in japans[0].forms
    # 'của', 'nhất' and 'bản' anywhere in a French passage do not make it about Japan.
    assert missing_anchors(japans, "Hai bên thống nhất các nội dung của bản dự thảo với Cộng hòa Pháp.")
    assert not missing_anchors(japans, "Chương trình học bổng của Chính phủ Nhật Bản.")


def test_a_split_name_needs_its_head_word():
    """'Chính phủ … Việt Nam' may be split in a passage, but 'cộng đồng … hòa … pháp luật' is not 'Cộng hòa Pháp'."""
    from rag.answer import KeyTerm, missing_anchors

    france = KeyTerm("France", (("cong", "hoa", "phap"),), 1.5, anchor=True)
    assert missing_anchors([france], "Cộng đồng người Việt hòa nhập, tuân thủ pháp luật.")
    assert not missing_anchors([france], "Đại sứ tại Cộng hòa Pháp.")
    government = KeyTerm("Chính phủ Việt Nam", (("chinh", "phu", "viet", "nam"),), 1.5, anchor=True)
    assert not missing_anchors([government], "Hiệp định giữa hai Chính phủ Việt Nam và Pháp")
    assert not missing_anchors([government], "Chính phủ hai nước … phía Việt Nam")


def test_a_one_word_name_counts_only_with_its_capital():
    """'Pháp' (France) is an anchor; the 'pháp' of 'giải pháp' (solution) is not France."""
    french = KeyTerm("French", (("phap",), ("cong", "hoa", "phap")), 1.5, anchor=True)
    assert missing_anchors([french], "Phó Thủ tướng chia sẻ giải pháp phát triển khoa học của Việt Nam.") == [french]
    assert missing_anchors([french], "Việt Nam và Pháp nhất trí nâng cấp Hiệp định hợp tác.") == []
    year = KeyTerm("2023", (("2023",),), 1.5, anchor=True)
    assert missing_anchors([year], "Diễn đàn năm 2023 tại Kyoto.") == []  # digits have no capital


def test_quotes_from_other_passages_repeat_the_short_answer(pipeline):
    """With a short answer (Kyoto), a further quote from another passage must state it too: a sentence
    that only shares the topic (the forum's opening session) is not evidence for the place."""
    answer = pipeline.ask("dien dan sts 2023 to chuc o dau")
    assert not answer.refused and "Kyoto" in answer.text.splitlines()[1], answer.text
    holder = next(c for c in answer.citations if "Kyoto" in c.quote).chunk.chunk_id
    for c in answer.citations:
        assert c.chunk.chunk_id == holder or "Kyoto" in c.quote, answer.text


def test_an_introduction_the_request_itself_covers_is_not_quoted(pipeline):
    """'Tại buổi làm việc …, Thứ trưởng … gửi lời cám ơn …' introduces the meeting; the request ('… mong
    muốn Đại sứ quán … hỗ trợ kết nối …') holds every question word it holds, so only the request is cited."""
    answer = pipeline.ask("What did Vice Minister Nguyễn Hoàng Giang ask the Vietnamese Embassy in Japan to help connect?")
    assert not answer.refused, answer.text
    quotes = [c.quote for c in answer.citations]
    assert any("hỗ trợ kết nối những nội dung" in q for q in quotes), quotes
    assert not any("gửi lời cám ơn" in q for q in quotes), quotes


def test_a_name_and_its_acronym_are_one_anchor(scaled):
    """'Trung tâm Đổi mới sáng tạo Quốc gia (NIC)' is one thing: a sentence naming 'NIC' holds it, so the
    place of NIC's new facilities is taken from that sentence, not from one about other countries."""
    from rag.answer import key_terms

    terms = key_terms("Where is the Trung tâm Đổi mới sáng tạo Quốc gia (NIC) adding new facilities?",
                      scaled.lexicon, scaled.index)
    nic = next(t for t in terms if t.surface == "NIC")
    assert nic.anchor and ("nic",) in nic.forms
    assert ("trung", "tam", "doi", "moi", "sang", "tao", "quoc", "gia") in nic.forms
    assert not any(t.surface.startswith("Trung tâm") for t in terms), [t.surface for t in terms]
    answer = scaled.ask("Where is the Trung tâm Đổi mới sáng tạo Quốc gia (NIC) adding new facilities?")
    assert not answer.refused and "Hà Nội" in answer.text.splitlines()[1], answer.text


def test_a_quoted_statement_carries_its_speaker():
    """A speech quoted over two sentences names its speaker after it closes; the first sentence is the
    statement and must count as said by that speaker."""
    from rag.answer import speakers

    sentences = ['"Nên tập trung thúc đẩy hợp tác trong các ngành công nghệ mới như bán dẫn, AI.',
                 'Cộng đồng nhà khoa học cần lựa chọn lĩnh vực ưu tiên", Phó Thủ tướng lưu ý.',
                 "Hai bên thống nhất tăng cường hợp tác.",
                 "“Chúng ta cần hành động”, Bộ trưởng nói."]
    assert speakers(sentences) == [", Phó Thủ tướng lưu ý.", "", "", ""]


def test_which_things_did_the_speaker_name_quotes_the_statement(pipeline):
    """'Which new technologies did P say …' is answered by P's quoted statement listing them, not by the
    sentence introducing P's meeting."""
    answer = pipeline.ask("Which new technologies did Phó Thủ tướng Nguyễn Chí Dũng say Vietnam should cooperate on with Japan?")
    assert not answer.refused, answer.text
    quotes = [c.quote for c in answer.citations]
    assert any("bán dẫn, AI, lượng tử" in q for q in quotes), quotes
    assert not any(q.startswith("Gặp gỡ và làm việc") for q in quotes), quotes


@pytest.mark.parametrize(("question", "lang"), [
    ("Hiroshi Komiyama là ai?", "vi"),
    ("hiroshi komiyama la ai", "vi"),
    ("Who is Hiroshi Komiyama?", "en"),
])
def test_who_is_a_named_person_gets_that_persons_role(pipeline, question, lang):
    """'X là ai?' asks for X's role, never for another name in the sentence ('Thứ trưởng Nguyễn Hoàng Giang
    tặng quà … Chủ tịch Diễn đàn STS Hiroshi Komiyama')."""
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    short = answer.text.splitlines()[1]
    assert "Chủ tịch Diễn đàn STS" in short and "Nguyễn Hoàng Giang" not in short, answer.text


def test_a_deputy_title_is_kept_whole(pipeline):
    answer = pipeline.ask("emb ai do ai ra mat")
    assert not answer.refused and "Phó Thủ tướng Nguyễn Chí Dũng" in answer.text.splitlines()[1], answer.text


def test_a_one_syllable_word_typed_with_tones_keeps_them(scaled):
    """'dân' (people) is not the 'đàn' of 'Diễn đàn': a passage about the forum in Osaka does not give
    Osaka's population, so the figure '57 cơ quan' is not an answer."""
    answer = scaled.ask("Osaka có bao nhiêu dân?")
    assert "57" not in answer.text, answer.text


@pytest.mark.parametrize("question", ["What is VJOIN?", "vjoin la gi"])
def test_an_acronym_is_defined_by_its_expansion(pipeline, question):
    """'<full name> (VJOIN)' defines VJOIN; a sentence that merely mentions 'Mạng lưới VJOIN' does not."""
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    assert "Mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản (VJOIN)" in answer.citations[0].quote, answer.text


def test_on_that_occasion_is_a_frame_not_a_topic(pipeline):
    """'Nhân dịp đó …' points back at the conversation: 'nhân dịp' is not a word the quote must hold, or
    any sentence mentioning an occasion would look on topic."""
    from rag.answer import key_terms

    terms = key_terms("Nhân dịp đó ứng dụng nào được ra mắt?", pipeline.lexicon, pipeline.index)
    assert not any(f[:1] in (("nhan",), ("dip",)) for t in terms for f in t.forms), [t.surface for t in terms]
    assert {"ứng dụng", "ra mắt"} <= {t.surface for t in terms}


@pytest.mark.parametrize("question", [
    "Những ai tham gia đoàn công tác của Bộ trưởng Đạt sang châu Âu năm 2022?",
    "nhung ai tham gia doan cong tac cua bo truong dat sang chau au nam 2022",
    "Who was in Minister Dat's delegation to Europe in 2022?",
])
def test_a_region_is_answered_by_a_country_in_it(pipeline, question):
    """The 2022 trip 'to Europe' is written as a visit to France and Geneva; the delegation's members are
    quoted, with no single name up front passing for the whole list."""
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    assert any("Tham gia đoàn Bộ trưởng" in c.quote for c in answer.citations), answer.text
    assert not answer.text.splitlines()[1].startswith(("Trả lời:", "Answer:")), answer.text
    _check_citations(answer)


@pytest.mark.parametrize("question", [
    "Bộ trưởng Đạt sang châu Á năm 2022 để làm gì?",
    "What did Minister Dat do in Asia in 2022?",
])
def test_a_region_is_not_answered_by_a_country_outside_it(pipeline, question):
    answer = pipeline.ask(question)
    assert answer.refused, answer.text


def test_a_region_needs_a_passage_about_places_in_it():
    from rag.answer import missing_anchors

    europe = KeyTerm("châu Âu", (("chau", "au"),), 1.5, anchor=True)
    assert not missing_anchors([europe], "Bộ trưởng thăm và làm việc tại CH Pháp và Geneva.")
    assert missing_anchors([europe], "Đây là giải pháp cho doanh nghiệp Việt Nam.")  # 'pháp' is not France
    assert missing_anchors([europe], "Bộ trưởng thăm Pháp rồi sang Hàn Quốc.")  # not about Europe alone


def test_a_title_leads_only_the_name_right_after_it():
    """'Bộ trưởng có đại diện lãnh đạo các đơn vị … Bộ Khoa học' is no title before a name; the head of an
    organisation's name ('Bộ Khoa') is no person; a body's name may come between title and name."""
    from rag.answer import short_answer

    sentence = ("Tham gia đoàn Bộ trưởng có đại diện lãnh đạo các đơn vị chức năng thuộc Bộ Khoa học và Công nghệ, "
                "Đại sứ Việt Nam tại Cộng hòa Pháp.")
    short = short_answer("person", sentence, "Ai tham gia đoàn của Bộ trưởng Đạt?")
    assert not short.startswith("Bộ trưởng có") and short != "Bộ Khoa", short
    wipo = "Làm việc với Tổng giám đốc Tổ chức Sở hữu trí tuệ thế giới (WIPO) Daren Tang ngày 13/7."
    assert short_answer("person", wipo, "tong giam doc wipo ten gi").endswith("Daren Tang")


def test_the_person_a_lower_case_question_names_is_not_the_answer(pipeline):
    """'thu truong nguyen hoang giang gap nhung ai …' names the Deputy Minister as its subject: the people he
    met are the answer, not the sentence naming him as head of the delegation."""
    answer = pipeline.ask("thu truong nguyen hoang giang gap nhung ai ben le hoi nghi sts")
    assert not answer.refused, answer.text
    assert "Hiroshi Komiyama" in answer.citations[0].quote, answer.text


@pytest.mark.parametrize("question", ["thu truong giang tang qua cho ai", "Thứ trưởng Giang tặng quà cho ai?"])
def test_a_country_is_no_persons_name(pipeline, question):
    """'… Đại sứ đặc mệnh toàn quyền Việt Nam tại Nhật Bản' gives no rival answer 'Việt Nam'."""
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    short = answer.text.splitlines()[1]
    assert "Việt Nam [" not in short and ("Takaichi Sanae" in short or "Hiroshi Komiyama" in short), answer.text


@pytest.mark.parametrize("question", [
    "Việt Nam sẽ tham gia trở lại chương trình khoa học nào của Nhật Bản?",
    "viet nam se tham gia tro lai chuong trinh khoa hoc nao cua nhat ban",
])
def test_the_asked_verb_must_be_quoted(pipeline, question):
    """Rejoining a programme is said of France only; a sentence about building cooperation programmes with
    Japan, or one naming a resolution, does not say which Japanese programme Vietnam will rejoin."""
    answer = pipeline.ask(question)
    assert answer.refused, answer.text


@pytest.mark.parametrize("question", [
    "Việt Nam sẽ tham gia trở lại chương trình khoa học uy tín nào của Pháp?",
    "viet nam se tham gia tro lai chuong trinh khoa hoc nao cua phap",
])
def test_the_programme_rejoined_is_quoted(pipeline, question):
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    assert any("Hubert Curien" in c.quote for c in answer.citations), answer.text


def test_which_name_questions_and_their_priority():
    from rag.answer import _names, answer_type, main_verb

    assert answer_type("Việt Nam sẽ tham gia trở lại chương trình khoa học nào của Nhật Bản?") == "name"
    assert answer_type("Which programme will Vietnam rejoin?") == "name"
    # 'tổ chức' is a verb here and a place is asked for.
    assert answer_type("Diễn đàn trí thức 2023 được tổ chức ở thành phố nào?") == "place"
    assert not _names("Đặc biệt, Phó Thủ tướng nhấn mạnh cần xây dựng các chương trình hợp tác với Nhật Bản.",
                      "chương trình nào của Nhật Bản?")
    curien = "Việt Nam tham gia trở lại với chương trình khoa học có uy tín của Pháp là Hubert Curien (Chương trình H)."
    assert any(curien[a:b] == "Hubert Curien" for a, b in _names(curien, "chương trình nào của Pháp?"))
    rejoin = KeyTerm("tham gia", (("tham", "gia"),), 0.5)
    assert main_verb("Việt Nam sẽ tham gia trở lại chương trình nào?", [rejoin]) == rejoin
    helps = KeyTerm("giúp", (("giup",),), 0.4)
    assert main_verb("Chuyến thăm đã giúp hai nước thống nhất điều gì?", [helps]) is None  # a light verb


@pytest.fixture(scope="module")
def undated(tmp_path_factory, loaded_embedder):
    """The seeds beside an undated encyclopaedia-like page (no front matter, so no date)."""
    from tests.conftest import pipeline_beside_seeds

    page = ("Quan hệ giáo dục giữa hai nước phát triển mạnh.\n\n"
            "Tổng số lưu học sinh Việt Nam ở Nhật hiện nay khoảng hơn 1000 người.\n\n"
            "Chính phủ Nhật Bản nhận khoảng trên 100 học sinh sinh viên Việt Nam sang Nhật Bản đào tạo hàng năm.\n")
    return pipeline_beside_seeds(tmp_path_factory.mktemp("undated"), loaded_embedder, {"quan-he.txt": page})


@pytest.mark.parametrize(("question", "figure", "other", "note"), [
    ("How many Vietnamese students are currently studying in Japan?", "hơn 1000", "trên 100",
     "(The source gives no date.)"),
    ("Hiện nay có bao nhiêu lưu học sinh Việt Nam ở Nhật?", "hơn 1000", "trên 100", "(Nguồn không ghi ngày.)"),
    ("Mỗi năm Nhật Bản nhận bao nhiêu sinh viên Việt Nam?", "trên 100", "hơn 1000", "(Nguồn không ghi ngày.)"),
])
def test_a_count_answers_the_period_asked(undated, question, figure, other, note):
    """'How many now?' is not answered by 'over 100 each year', nor 'how many a year?' by a total; 'ở Nhật'
    names Japan; an undated source is said to be undated (its 'hiện nay' may be old)."""
    answer = undated.ask(question)
    assert not answer.refused, answer.text
    short = answer.text.splitlines()[1]
    assert figure in short and other not in short, answer.text
    assert note in answer.text
    _check_citations(answer)


def test_japan_by_its_short_name():
    japan = KeyTerm("Japan", (("japan",), ("nhat", "ban")), 0.35, anchor=True)
    assert not missing_anchors([japan], "Tổng số lưu học sinh Việt Nam ở Nhật hiện nay khoảng hơn 1000 người.")
    assert missing_anchors([japan], "Đây là trường đại học lớn nhất, theo nhật ký của ông.")


def test_an_english_question_leads_with_the_sentence_saying_its_verb(pipeline):
    """'What did Vietnam and France agree on …?' is answered by what they agreed ('đi đến thống nhất: Thứ
    nhất, đồng ý … nâng cấp Hiệp định'), not by the sentence introducing the visit."""
    answer = pipeline.ask("What did Vietnam and France agree on during Minister Đạt's visit?")
    assert not answer.refused, answer.text
    assert re.search(r"thống nhất|đồng ý|nhất trí", answer.citations[0].quote), answer.text


@pytest.mark.parametrize(("question", "refused"), [
    ("Which programme will Vietnam rejoin?", False),
    ("Which Japanese programme will Vietnam rejoin?", True),
])
def test_an_english_verb_must_be_quoted(pipeline, question, refused):
    answer = pipeline.ask(question)
    assert answer.refused is refused, answer.text
    if not refused:
        assert any("Hubert Curien" in c.quote for c in answer.citations), answer.text


def test_english_main_verb_only_after_a_subject_of_names(pipeline):
    from rag.answer import key_terms, main_verb

    def verb(q):
        found = main_verb(q, key_terms(q, pipeline.lexicon, pipeline.index))
        return found.surface if found else None

    assert verb("What did Vietnam and France agree on during Minister Đạt's visit?") == "agree"
    assert verb("When did the forum take place?") is None  # 'forum' is the subject, not the verb
    assert verb("Which ministry did Nguyễn Chí Dũng head in December 2023?") is None  # a title states a role
    assert verb("Which programme will Vietnam frobnicate?") is None  # an unknown verb cannot be looked for


@pytest.mark.parametrize(("question", "expansion"), [
    ("VJOIN là tên viết tắt của tổ chức nào?", "Mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản (VJOIN)"),
    ("What does VJOIN stand for?", "Mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản (VJOIN)"),
    ("nic viet tat cua gi", "Trung tâm Đổi mới sáng tạo Quốc gia (NIC)"),
    ("What is NIC short for?", "Trung tâm Đổi mới sáng tạo Quốc gia (NIC)"),
])
def test_an_abbreviation_is_answered_by_its_expansion(pipeline, question, expansion):
    """'X là tên viết tắt của tổ chức nào?' asks for X's expansion; 'viết tắt' is no topic word (typed
    without tones, 'viet' would match every 'Việt')."""
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    assert expansion in answer.citations[0].quote, answer.text


def test_a_count_is_the_figure_the_asked_thing_follows():
    """'How many students?' -> '3.000 lưu học sinh', not '17.000 người Việt sinh sống' beside it, which shares
    more words ('người', 'Việt', 'sinh') with the question."""
    from rag.answer import short_answer

    sentence = ("Hiện nay, cộng đồng người Việt Nam tại Nhật Bản có 37.000 người, trong đó có khoảng 17.000 người "
                "Việt sinh sống tại Nhật Bản, 17.000 tu nghiệp sinh và 3.000 lưu học sinh.")
    extra = ("nguoi", "viet", "nam", "hoc", "sinh", "vien")
    units = (("hoc", "sinh"), ("sinh", "vien"), ("students",))
    question = "How many Vietnamese students are currently studying in Japan?"
    assert short_answer("number", sentence, question, extra, units=units) == "3.000 lưu học sinh"
