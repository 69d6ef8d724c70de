"""Entity extraction on the real seed chunks, question detection in vi / no-tones / en, province merging,
the entity-overlap ranking, Chroma-ready metadata and the corpus overview."""

from __future__ import annotations

import re

import pytest

from rag.entities import (
    KINDS,
    Entities,
    corpus_overview,
    detect_question_entities,
    entity_ranking,
    extract_all,
    extract_entities,
    find_mentions,
)
from rag.types import Chunk


@pytest.fixture(scope="module")
def chunks(pipeline) -> dict[str, Chunk]:
    return pipeline.index.chunks


@pytest.fixture(scope="module")
def chunk_entities(chunks) -> dict[str, Entities]:
    return extract_all(chunks)


def sentence_with(chunks: dict[str, Chunk], phrase: str) -> str:
    """The first sentence of the indexed seed corpus that contains `phrase` (fails if none does)."""
    for c in chunks.values():
        for s in re.split(r"(?<=[.!?])\s+|\n", c.text):
            if phrase in s:
                return s
    raise AssertionError(f"no seed sentence contains {phrase!r}")


# ---------------------------------------------------------------- documents


def test_consulate_and_st_office_in_osaka(chunks):
    s = sentence_with(chunks, "Tổng Lãnh sự quán Việt Nam tại Osaka và Văn phòng đại diện KH&CN tại Osaka")
    e = extract_entities(s)
    assert {"vn_consulate_osaka", "vn_st_office_osaka"} <= set(e.organizations)
    assert e.places_jp == ("Osaka",)  # the place inside the organisation names counts too
    assert e.people == ("Nguyễn Hoàng Giang",)


def test_vjoin_nic_and_lower_case_network_name(chunks):
    e = extract_entities(sentence_with(chunks, "Trung tâm Đổi mới sáng tạo Quốc gia (NIC)"))
    assert "vn_nic" in e.organizations
    assert "vn_vjoin" in extract_entities(sentence_with(chunks, "Mạng lưới VJOIN đẩy mạnh")).organizations
    # The Deputy PM's article names the network in lower case, without its acronym.
    lower = sentence_with(chunks, "vai trò của mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản")
    assert "vn_vjoin" in extract_entities(lower).organizations
    # An acronym must be in capitals in documents: 'nic' in running text is not the centre.
    assert "vn_nic" not in extract_entities("Họ nói về nic và các hạ tầng khác tại Hòa Lạc.").organizations


def test_wipo_and_its_director_general(chunks):
    e = extract_entities(sentence_with(chunks, "Tổng giám đốc Tổ chức Sở hữu trí tuệ thế giới (WIPO) Daren Tang"))
    assert "int_wipo" in e.organizations
    assert "Daren Tang" in e.people
    assert "Huỳnh Thành Đạt" in e.people


def test_people_by_title_with_qualifiers(chunks):
    assert extract_entities("Thứ trưởng Nguyễn Hoàng Giang phát biểu tại Hội nghị bàn tròn.").people == (
        "Nguyễn Hoàng Giang",
    )
    s = sentence_with(chunks, "Chủ tịch Diễn đàn STS Hiroshi Komiyama và Bộ trưởng Nội các Nhật Bản")
    assert set(extract_entities(s).people) >= {"Hiroshi Komiyama", "Takaichi Sanae"}
    s = sentence_with(chunks, "Bộ trưởng Bộ Kế hoạch và Đầu tư Nguyễn Chí Dũng làm việc")
    people = extract_entities(s).people
    assert "Nguyễn Chí Dũng" in people and "Phạm Minh Chính" in people
    assert not any("Kế hoạch" in p or "Đầu tư" in p for p in people)
    # 'Đại sứ quán' is an institution, and a title followed by no name names nobody.
    assert extract_entities(sentence_with(chunks, "Đại sứ quán Việt Nam tại Nhật Bản tổ chức quán triệt")).people == ()
    assert extract_entities("Chiến lược vừa được Thủ tướng Chính phủ phê duyệt, ban hành.").people == ()


def test_programmes_are_short_and_clean(chunks):
    e = extract_entities(sentence_with(chunks, "Nghị quyết 57 về khoa học công nghệ"))
    assert e.programmes[:4] == ("Nghị quyết 57", "Nghị quyết 59", "Nghị quyết 66", "Nghị quyết 68")
    assert "Nghị quyết 57" in extract_entities(sentence_with(chunks, "Nghị quyết 57-NQ/TW")).programmes
    giang = extract_entities(sentence_with(chunks, "Đề án thu hút trí thức Việt Nam ở nước ngoài")).programmes
    assert "Chiến lược phát triển khoa học, công nghệ và đổi mới sáng tạo đến năm 2030" in giang
    assert "Đề án thu hút trí thức Việt Nam ở nước ngoài" in giang
    assert "Chương trình trọng điểm cấp quốc gia" in giang
    vjoin = extract_entities(sentence_with(chunks, "(VIIE2023)")).programmes
    assert "Triển lãm VIIE2023" in vjoin
    everything = {p for e in extract_all(chunks).values() for p in e.programmes}
    strategies = {p for p in everything if re.search(r"đến năm \d{4}$", p)}
    assert all(len(p.split()) <= 20 for p in strategies), strategies  # official names with a horizon
    assert all(len(p.split()) <= 16 for p in everything - strategies), everything - strategies
    assert not any(p.endswith((" và", " của", ",", ";")) for p in everything)
    # The STS forum is an organisation of the gazetteer, not a programme named 'Diễn đàn STS thu hút…'.
    assert not any(p.startswith("Diễn đàn STS") for p in everything)


def test_sectors_and_japanese_places(chunks):
    assert "semiconductors" in extract_entities("Triển khai nghiên cứu một số lĩnh vực như: bán dẫn, hydrogen xanh.").sectors
    e = extract_entities(sentence_with(chunks, "lần thứ 20 tại thành phố Kyoto"))
    assert e.places_jp == ("Kyoto",)
    # 'AI' only in capitals: the Vietnamese 'ai' (who) is not artificial intelligence.
    assert "ai" in extract_entities("hợp tác trong các ngành công nghệ mới như bán dẫn, AI, lượng tử").sectors
    assert "ai" not in extract_entities("Không biết ai sẽ hỗ trợ doanh nghiệp.").sectors
    # Place names are capitalised in prose: 'cao bằng' (as high as) is not Cao Bằng.
    assert extract_entities("Tòa nhà cao bằng núi.").places_vn == ()
    assert extract_entities("Doanh nghiệp tỉnh Cao Bằng tham dự.").places_vn == ("Cao Bằng",)


def test_mentions_are_exact_spans(chunks):
    for c in chunks.values():
        for m in find_mentions(c.text):
            assert c.text[m.start : m.end] == m.surface
            assert m.kind in KINDS


# ---------------------------------------------------------------- questions


@pytest.mark.parametrize(
    "question",
    [
        "Tổng Lãnh sự quán Việt Nam tại Osaka hỗ trợ doanh nghiệp thế nào?",
        "tong lanh su quan viet nam tai osaka ho tro doanh nghiep the nao",
        "How does the Consulate General of Viet Nam in Osaka help companies?",
    ],
)
def test_question_detection_in_three_scripts(question):
    e = detect_question_entities(question)
    assert "vn_consulate_osaka" in e.organizations
    assert "Osaka" in e.places_jp


@pytest.mark.parametrize(
    ("question", "kind", "expected"),
    [
        ("Hợp tác bán dẫn với Nhật Bản?", "sectors", "semiconductors"),
        ("hop tac ban dan voi nhat ban", "sectors", "semiconductors"),
        ("semiconductor cooperation with Japan", "sectors", "semiconductors"),
        ("nghi quyet 57 noi gi", "programmes", "Nghị quyết 57"),
        ("What does Resolution 57 say?", "programmes", "Nghị quyết 57"),
        ("vjoin la gi", "organizations", "vn_vjoin"),
        ("What does the National Innovation Center do?", "organizations", "vn_nic"),
        ("Thứ trưởng Nguyễn Hoàng Giang đi Kyoto khi nào?", "people", "Nguyễn Hoàng Giang"),
    ],
)
def test_question_entities(question, kind, expected):
    assert expected in getattr(detect_question_entities(question), kind)


def test_old_and_new_province_names_resolve_alike():
    asked = [
        "Doanh nghiệp ở Vĩnh Phúc muốn hợp tác bán dẫn với Nhật",
        "doanh nghiep o vinh phuc muon hop tac ban dan voi nhat",
        "Doanh nghiệp ở Phú Thọ muốn hợp tác bán dẫn với Nhật",
        "Companies in Phu Tho want semiconductor partners in Japan",
    ]
    found = [detect_question_entities(q) for q in asked]
    assert all(e.provinces() == ("Phú Thọ",) for e in found), [e.places_vn for e in found]
    assert found[0].places_vn == ("Vĩnh Phúc→Phú Thọ",)  # both forms kept
    assert found[2].places_vn == ("Phú Thọ",)
    assert found[0].match_keys() & found[2].match_keys() >= {("places_vn", "phu tho")}
    # A merged province and an untouched one differ.
    assert detect_question_entities("Cà Mau").provinces() == ("Cà Mau",)
    assert detect_question_entities("Bạc Liêu").provinces() == ("Cà Mau",)
    assert detect_question_entities("Hà Giang").provinces() != ("Phú Thọ",)


# ---------------------------------------------------------------- ranking, metadata, overview


def test_entity_ranking_puts_the_consulate_chunk_first(chunks, chunk_entities):
    for q in ("Tổng Lãnh sự quán Việt Nam tại Osaka", "Consulate General of Viet Nam in Osaka"):
        ranked = entity_ranking(detect_question_entities(q), chunks, chunk_entities)
        assert ranked[0] == "dien-dan-sts-kyoto-2023#0004"
        # Only chunks that share an entity with the question are ranked.
        assert all(chunk_entities[c].match_keys() & detect_question_entities(q).match_keys() for c in ranked)
    assert entity_ranking(detect_question_entities("thời tiết hôm nay"), chunks, chunk_entities) == []


def test_entity_ranking_matches_old_province_names_in_documents(chunks, chunk_entities):
    extra = Chunk("extra#0000", "extra", 0, "Sở KH&CN tỉnh Vĩnh Phúc làm việc với JETRO về bán dẫn.", 0, 55)
    all_chunks = {**chunks, extra.chunk_id: extra}
    all_entities = {**chunk_entities, extra.chunk_id: extract_entities(extra.text)}
    for q in ("Doanh nghiệp Phú Thọ hợp tác bán dẫn", "doanh nghiep vinh phuc hop tac ban dan"):
        assert entity_ranking(detect_question_entities(q), all_chunks, all_entities)[0] == "extra#0000"


def test_bounded_and_masked_entity_ranking_agree_with_the_full_ranking(chunks, chunk_entities):
    import numpy as np

    question = detect_question_entities(
        "Bộ KH&CN, JICA, JETRO, Đại sứ quán Việt Nam tại Nhật Bản hợp tác bán dẫn, trí tuệ nhân tạo ở Tokyo, Osaka, Hà Nội"
    )
    full = entity_ranking(question, chunks, chunk_entities)
    assert len(full) > 6
    for limit in (1, 3, 6):
        assert entity_ranking(question, chunks, chunk_entities, limit=limit) == full[:limit]
    ids = list(chunks)
    mask = np.array([cid.startswith("dien-dan-sts") for cid in ids])
    masked = entity_ranking(question, chunks, chunk_entities, ids=ids, mask=mask, limit=4)
    assert masked and masked == [cid for cid in full if cid.startswith("dien-dan-sts")][:4]
    # A subset of the chunks (connect.py's pool) still gets `limit` results from inside the subset.
    pool = {cid: c for cid, c in chunks.items() if not cid.startswith(full[0].split("#")[0])}
    assert entity_ranking(question, pool, chunk_entities, limit=3) == [cid for cid in full if cid in pool][:3]


def test_metadata_round_trip_through_chroma(chunk_entities):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    col = client.get_or_create_collection("entities_test", embedding_function=None)
    ids = sorted(chunk_entities)
    metas = [chunk_entities[c].as_metadata() for c in ids]
    assert all(isinstance(v, str | bool) for m in metas for v in m.values())
    col.add(ids=ids, embeddings=[[float(i), 1.0] for i in range(len(ids))], metadatas=metas)
    back = col.get(ids=ids, include=["metadatas"])
    for cid, meta in zip(back["ids"], back["metadatas"], strict=True):
        assert Entities.from_metadata(meta) == chunk_entities[cid]
    with_orgs = col.get(where={"has_organizations": True}, include=[])["ids"]
    assert set(with_orgs) == {c for c in ids if chunk_entities[c].organizations}


def test_corpus_overview_counts(chunks, chunk_entities):
    rows = corpus_overview(chunk_entities, chunks)
    by = {(r["kind"], r["entity"]): r for r in rows}
    embassy = by[("organizations", "vn_embassy_japan")]
    holding = [c for c, e in chunk_entities.items() if "vn_embassy_japan" in e.organizations]
    assert embassy["chunks"] == len(holding)
    assert embassy["doc_ids"] == [
        "pho-thu-tuong-gap-nha-khoa-hoc-viet-nam-tai-nhat-2025",
        "thu-truong-giang-lam-viec-dai-su-quan-nhat-ban",
    ]
    assert embassy["documents"] == 2
    # The undated article does not count towards the date range.
    assert embassy["first_date"] == embassy["last_date"] == "2025-06-01"
    assert any(c["entity"] == "Phạm Quang Hiệu" for c in embassy["co_occurring"])
    counts = [r["chunks"] for r in rows]
    assert counts == sorted(counts, reverse=True)
    sts = by[("places_jp", "Kyoto")]
    assert sts["first_date"] == "2023-10-09" and sts["documents"] == 1
