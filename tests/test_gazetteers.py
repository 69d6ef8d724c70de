"""Checks on the hand-reviewed tables in rag/data/ and the loader in rag/gazetteer.py."""

from __future__ import annotations

import ast
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from rag.gazetteer import (
    DATA_DIR,
    JP_PLACE_COLUMNS,
    LEXICON_COLUMNS,
    ORGANIZATION_COLUMNS,
    PROVINCE_COLUMNS,
    SECTOR_COLUMNS,
    GazetteerError,
    ProvinceMatch,
    load_jp_places,
    load_lexicon,
    load_organizations,
    load_provinces,
    load_sectors,
    merged_into,
    name_key,
    new_province_names,
    province_lookup,
    read_tsv,
    strip_diacritics,
)

TABLES = {
    "lexicon_en_vi.tsv": LEXICON_COLUMNS,
    "provinces.tsv": PROVINCE_COLUMNS,
    "jp_places.tsv": JP_PLACE_COLUMNS,
    "organizations.tsv": ORGANIZATION_COLUMNS,
    "sectors.tsv": SECTOR_COLUMNS,
}

# ---------------------------------------------------------------- every file


@pytest.mark.parametrize(("filename", "columns"), TABLES.items())
def test_tsv_is_well_formed(filename, columns):
    raw = (DATA_DIR / filename).read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "no byte-order mark"
    assert b"\r" not in raw, "Unix line endings"
    assert raw.endswith(b"\n")
    text = raw.decode("utf-8")
    assert unicodedata.normalize("NFC", text) == text, "text must be NFC"
    lines = text.split("\n")[:-1]
    assert lines[0].split("\t") == list(columns)
    assert len(lines) > 1
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        assert len(cells) == len(columns), f"{filename}:{lineno}: {len(cells)} columns"
        for cell in cells:
            assert cell == cell.strip(), f"{filename}:{lineno}: stray whitespace in {cell!r}"
            assert "  " not in cell, f"{filename}:{lineno}: double space in {cell!r}"
        alias_cells = [c for c, name in zip(cells, columns, strict=True) if name == "aliases"]
        for cell in alias_cells:
            if cell:
                assert all(a and a == a.strip() for a in cell.split("|")), f"{filename}:{lineno}: bad aliases"
    assert len(set(lines[1:])) == len(lines) - 1, f"{filename}: duplicate rows"


def test_read_tsv_rejects_wrong_header_and_column_count(tmp_path: Path):
    (tmp_path / "bad_header.tsv").write_text("en\tvi\n", encoding="utf-8")
    with pytest.raises(GazetteerError, match="header"):
        read_tsv("bad_header.tsv", LEXICON_COLUMNS, data_dir=tmp_path)
    (tmp_path / "bad_row.tsv").write_text("en\tvi\tkind\nscience\tkhoa học\n", encoding="utf-8")
    with pytest.raises(GazetteerError, match=r"bad_row\.tsv:2: expected 3 columns"):
        read_tsv("bad_row.tsv", LEXICON_COLUMNS, data_dir=tmp_path)
    with pytest.raises(GazetteerError, match="cannot read"):
        read_tsv("missing.tsv", LEXICON_COLUMNS, data_dir=tmp_path)


def test_read_tsv_normalises_to_nfc(tmp_path: Path):
    decomposed = unicodedata.normalize("NFD", "khoa học")
    (tmp_path / "t.tsv").write_text(f"en\tvi\tkind\nscience\t{decomposed}\tterm\n", encoding="utf-8")
    assert read_tsv("t.tsv", LEXICON_COLUMNS, data_dir=tmp_path) == [("science", "khoa học", "term")]


def test_gazetteer_module_imports_only_the_standard_library():
    tree = ast.parse((Path(__file__).resolve().parent.parent / "rag" / "gazetteer.py").read_text("utf-8"))
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


# ---------------------------------------------------------------- text helpers


def test_strip_diacritics():
    assert strip_diacritics("Đổi mới sáng tạo") == "Doi moi sang tao"
    assert strip_diacritics(unicodedata.normalize("NFD", "Đắk Lắk")) == "Dak Lak"
    assert strip_diacritics("Tōkyō") == "Tokyo"
    assert strip_diacritics("KH&CN 5G/6G") == "KH&CN 5G/6G"


def test_name_key_folds_case_tones_and_punctuation():
    assert name_key("TP.HCM") == "tp hcm"
    assert name_key("Bà Rịa–Vũng Tàu") == name_key("ba ria - vung tau") == "ba ria vung tau"
    assert name_key("Hoà Bình") == name_key("Hòa Bình")


# ---------------------------------------------------------------- provinces

UNMERGED = {
    "Hà Nội", "Huế", "Lai Châu", "Điện Biên", "Sơn La", "Lạng Sơn",
    "Quảng Ninh", "Thanh Hóa", "Nghệ An", "Hà Tĩnh", "Cao Bằng",
}  # fmt: skip

KNOWN_MAPPINGS = [
    ("Vĩnh Phúc", "Phú Thọ"),
    ("Hòa Bình", "Phú Thọ"),
    ("Phú Thọ", "Phú Thọ"),
    ("Hà Giang", "Tuyên Quang"),
    ("Yên Bái", "Lào Cai"),
    ("Bắc Kạn", "Thái Nguyên"),
    ("Bắc Giang", "Bắc Ninh"),
    ("Thái Bình", "Hưng Yên"),
    ("Hải Dương", "Hải Phòng"),
    ("Nam Định", "Ninh Bình"),
    ("Hà Nam", "Ninh Bình"),
    ("Quảng Bình", "Quảng Trị"),
    ("Quảng Nam", "Đà Nẵng"),
    ("Kon Tum", "Quảng Ngãi"),
    ("Bình Định", "Gia Lai"),
    ("Ninh Thuận", "Khánh Hòa"),
    ("Đắk Nông", "Lâm Đồng"),
    ("Bình Thuận", "Lâm Đồng"),
    ("Phú Yên", "Đắk Lắk"),
    ("Bình Dương", "TP Hồ Chí Minh"),
    ("Bà Rịa - Vũng Tàu", "TP Hồ Chí Minh"),
    ("Bình Phước", "Đồng Nai"),
    ("Long An", "Tây Ninh"),
    ("Sóc Trăng", "Cần Thơ"),
    ("Hậu Giang", "Cần Thơ"),
    ("Bến Tre", "Vĩnh Long"),
    ("Trà Vinh", "Vĩnh Long"),
    ("Tiền Giang", "Đồng Tháp"),
    ("Bạc Liêu", "Cà Mau"),
    ("Kiên Giang", "An Giang"),
    ("Hà Nội", "Hà Nội"),
    ("Huế", "Huế"),
]


def test_63_old_units_and_34_new_ones():
    provinces = load_provinces()
    olds = [p.old_name for p in provinces]
    assert len(olds) == 63
    assert len(set(olds)) == 63
    assert len({p.new_name for p in provinces}) == 34
    assert len(new_province_names()) == 34


def test_every_new_name_is_an_old_name_that_maps_to_itself():
    by_old = {p.old_name: p.new_name for p in load_provinces()}
    known_new_only: set[str] = set()  # Resolution 202/2025/QH15 created no new names
    for new in new_province_names():
        assert new in by_old or new in known_new_only, new
        assert by_old.get(new, new) == new, f"{new} is a new unit but its old namesake maps elsewhere"


def test_unmerged_units_map_to_themselves_and_nothing_else_joins_them():
    provinces = load_provinces()
    unchanged = {p.old_name for p in provinces if p.old_name == p.new_name}
    groups = Counter(p.new_name for p in provinces)
    singletons = {name for name, n in groups.items() if n == 1}
    assert singletons == UNMERGED
    assert unchanged >= UNMERGED
    assert len(unchanged) == 34  # each new unit is named after one member
    assert sum(1 for p in provinces if p.merged) == 63 - 34
    # units formed from three former provinces/cities
    assert {name for name, n in groups.items() if n == 3} == {
        "Phú Thọ", "Ninh Bình", "Lâm Đồng", "TP Hồ Chí Minh", "Cần Thơ", "Vĩnh Long",
    }  # fmt: skip


@pytest.mark.parametrize(("old", "new"), KNOWN_MAPPINGS)
def test_known_merger_mapping(old, new):
    assert province_lookup(old) == ProvinceMatch(old, new)


def test_ascii_columns_equal_stripped_lowercase_names():
    for p in load_provinces():
        assert p.old_ascii == strip_diacritics(p.old_name.lower())
        assert p.new_ascii == strip_diacritics(p.new_name.lower())
        assert p.old_ascii.isascii()
        assert p.new_ascii.isascii()


def test_province_names_and_aliases_are_unambiguous():
    owners: dict[str, set[str]] = defaultdict(set)
    for p in load_provinces():
        for form in (p.old_name, p.old_ascii, *p.aliases):
            owners[name_key(form)].add(p.old_name)
    clashes = {key: names for key, names in owners.items() if len(names) > 1}
    assert not clashes


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("vinh phuc", ProvinceMatch("Vĩnh Phúc", "Phú Thọ")),
        ("VINH PHUC", ProvinceMatch("Vĩnh Phúc", "Phú Thọ")),
        ("tỉnh Vĩnh Phúc", ProvinceMatch("Vĩnh Phúc", "Phú Thọ")),
        ("Vinh Phuc province", ProvinceMatch("Vĩnh Phúc", "Phú Thọ")),
        ("Hoà Bình", ProvinceMatch("Hòa Bình", "Phú Thọ")),
        ("binh duong", ProvinceMatch("Bình Dương", "TP Hồ Chí Minh")),
        ("Ba Ria-Vung Tau", ProvinceMatch("Bà Rịa - Vũng Tàu", "TP Hồ Chí Minh")),
        ("TP.HCM", ProvinceMatch("TP Hồ Chí Minh", "TP Hồ Chí Minh")),
        ("Sài Gòn", ProvinceMatch("TP Hồ Chí Minh", "TP Hồ Chí Minh")),
        ("Ho Chi Minh City", ProvinceMatch("TP Hồ Chí Minh", "TP Hồ Chí Minh")),
        ("Hanoi", ProvinceMatch("Hà Nội", "Hà Nội")),
        ("thành phố Hà Nội", ProvinceMatch("Hà Nội", "Hà Nội")),
        ("Thừa Thiên Huế", ProvinceMatch("Huế", "Huế")),
        ("Danang", ProvinceMatch("Đà Nẵng", "Đà Nẵng")),
        ("quang nam", ProvinceMatch("Quảng Nam", "Đà Nẵng")),
        ("Daklak", ProvinceMatch("Đắk Lắk", "Đắk Lắk")),
        ("ha giang", ProvinceMatch("Hà Giang", "Tuyên Quang")),
        ("TP. Cần Thơ", ProvinceMatch("Cần Thơ", "Cần Thơ")),
    ],
)
def test_province_lookup_variants(query, expected):
    assert province_lookup(query) == expected


@pytest.mark.parametrize("query", ["", "   ", "Osaka", "Tokyo", "Nam", "tỉnh", "Quảng"])
def test_province_lookup_unknown_names(query):
    assert province_lookup(query) is None


def test_merged_into():
    assert set(merged_into("phu tho")) == {"Phú Thọ", "Vĩnh Phúc", "Hòa Bình"}
    assert set(merged_into("TP.HCM")) == {"TP Hồ Chí Minh", "Bình Dương", "Bà Rịa - Vũng Tàu"}
    assert merged_into("Hà Nội") == ("Hà Nội",)
    assert merged_into("nowhere") == ()


# ---------------------------------------------------------------- Japanese places


def test_47_prefectures():
    places = load_jp_places()
    prefectures = [p for p in places if p.kind == "prefecture"]
    assert len(prefectures) == 47
    assert len({p.name_en for p in prefectures}) == 47
    names = {p.name_en for p in prefectures}
    assert {"Tokyo", "Osaka", "Kyoto", "Hokkaido", "Okinawa", "Fukuoka", "Aichi", "Kanagawa"} <= names
    # every prefecture lists its kanji name ending in 都, 道, 府 or 県
    for p in prefectures:
        assert any(re.fullmatch(r"[\u3040-\u30ff\u4e00-\u9fff]+[都道府県]", a) for a in p.aliases), p.name_en


def test_jp_places_keys_and_aliases_are_unique():
    places = load_jp_places()
    keys = [(p.name_en, p.kind) for p in places]
    assert len(keys) == len(set(keys))
    assert {p.kind for p in places} == {"prefecture", "city", "region"}
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for p in places:
        assert p.name_en.isascii()
        for alias in p.aliases:
            owners[name_key(alias) or alias].add((p.name_en, p.kind))
    assert not {k: v for k, v in owners.items() if len(v) > 1}
    tokyo = next(p for p in places if p.name_en == "Tokyo" and p.kind == "prefecture")
    assert {"Tô-ky-ô", "Đông Kinh"} <= set(tokyo.aliases)
    osaka = next(p for p in places if p.name_en == "Osaka" and p.kind == "prefecture")
    assert "Ô-sa-ka" in osaka.aliases


# ---------------------------------------------------------------- organisations and sectors


def test_organizations_are_unique_and_complete():
    orgs = load_organizations()
    for field in ("id", "name_vi", "name_en"):
        values = [getattr(o, field) for o in orgs]
        assert len(values) == len(set(values)), f"duplicate {field}"
    assert all(re.fullmatch(r"[a-z0-9_]+", o.id) for o in orgs)
    assert all(re.fullmatch(r"[A-Z]{2}|INT", o.country) for o in orgs)
    acronyms = {o.acronym for o in orgs}
    for acronym in ["NIC", "VJOIN", "JETRO", "JICA", "JST", "JSPS", "NEDO", "WIPO", "UNESCO", "NAFOSTED",
                    "VCCI", "JCCI", "SATI", "CNES", "BPI France", "ASEAN", "MEXT", "METI", "MOST", "MPI"]:  # fmt: skip
        assert acronym in acronyms, acronym
    by_id = {o.id: o for o in orgs}
    assert by_id["vn_most"].name_vi == "Bộ Khoa học và Công nghệ"
    assert "Bộ KH&CN" in by_id["vn_most"].aliases
    assert by_id["vn_mpi"].name_vi == "Bộ Kế hoạch và Đầu tư"
    assert by_id["vn_nafosted"].name_vi == "Quỹ Phát triển khoa học và công nghệ Quốc gia"
    assert by_id["vn_nic"].name_vi == "Trung tâm Đổi mới sáng tạo Quốc gia"
    assert by_id["vn_ip_office"].name_vi == "Cục Sở hữu trí tuệ"
    assert by_id["vn_embassy_japan"].kind == "embassy"
    assert {by_id["vn_consulate_osaka"].kind, by_id["vn_consulate_fukuoka"].kind} == {"consulate"}
    assert by_id["vn_st_office_tokyo"].kind == by_id["vn_st_office_osaka"].kind == "representative_office"
    assert by_id["jp_sts_forum"].name_vi == "Diễn đàn Khoa học và Công nghệ trong xã hội"
    assert by_id["jp_avij"].name_vi == "Hội Trí thức Việt Nam tại Nhật Bản"
    assert by_id["jp_cabinet_office"].country == "JP"


def test_sectors_are_unique_and_cover_the_priority_fields():
    sectors = load_sectors()
    ids = [s.id for s in sectors]
    assert len(ids) == len(set(ids))
    owners: dict[str, set[str]] = defaultdict(set)
    for s in sectors:
        for form in (s.name_en, s.name_vi, *s.aliases):
            owners[name_key(form)].add(s.id)
    assert not {k: v for k, v in owners.items() if len(v) > 1}, "a synonym belongs to two sectors"
    required = {
        "semiconductors", "ai", "quantum", "biotech", "green_hydrogen", "digital_content", "data_centres",
        "telecom_5g_6g", "satellites", "robotics", "blockchain", "cloud", "intellectual_property", "vaccines",
        "water_resources", "logistics", "agriculture", "healthcare", "space", "green_tech", "new_energy",
        "nuclear", "digital_transformation", "lng",
    }  # fmt: skip
    assert required <= set(ids)
    by_id = {s.id: s for s in sectors}
    assert by_id["semiconductors"].name_vi == "Bán dẫn"
    assert by_id["green_hydrogen"].name_vi == "Hydrogen xanh"
    assert "lượng tử" in by_id["quantum"].aliases


# ---------------------------------------------------------------- lexicon

# Acronyms the retrieval layer must know, in either column.
REQUIRED_ACRONYMS = [
    "NIC", "VJOIN", "WIPO", "UNESCO", "JETRO", "JICA", "STS", "NIS", "PII", "SATI", "BPI France", "CNES",
    "ASEAN", "EMB-AI", "NAFOSTED", "KH&CN", "KHCN", "ĐMST", "CNTT", "AI", "MOU", "SME", "R&D", "FDI",
    "ODA", "5G", "6G", "IP", "JST", "JSPS", "NEDO", "MEXT", "METI", "VCCI", "UBND",
]  # fmt: skip

REQUIRED_PAIRS = [
    ("science and technology", "khoa học và công nghệ"),
    ("science and technology", "khoa học công nghệ"),
    ("science and technology", "KH&CN"),
    ("science and technology", "KHCN"),
    ("innovation", "đổi mới sáng tạo"),
    ("innovation", "ĐMST"),
    ("information technology", "CNTT"),
    ("digital transformation", "chuyển đổi số"),
    ("high-quality human resources", "nguồn nhân lực chất lượng cao"),
    ("small and medium-sized enterprises", "doanh nghiệp nhỏ và vừa"),
    ("technology transfer", "chuyển giao công nghệ"),
    ("intellectual property", "sở hữu trí tuệ"),
    ("Ministry of Science and Technology", "Bộ Khoa học và Công nghệ"),
    ("Ministry of Science and Technology", "Bộ KH&CN"),
    ("Ministry of Planning and Investment", "Bộ Kế hoạch và Đầu tư"),
    ("Ministry of Foreign Affairs", "Bộ Ngoại giao"),
    ("NAFOSTED", "Quỹ Phát triển KH&CN Quốc gia"),
    ("NIC", "Trung tâm Đổi mới sáng tạo Quốc gia"),
    ("VJOIN", "Mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản"),
    ("WIPO", "Tổ chức Sở hữu trí tuệ Thế giới"),
    ("STS forum", "Diễn đàn KH&CN trong xã hội"),
    ("NIS", "hệ thống đổi mới sáng tạo quốc gia"),
    ("PII", "chỉ số đổi mới sáng tạo cấp địa phương"),
    ("IP Office", "Cục Sở hữu trí tuệ"),
    ("deputy minister", "thứ trưởng"),
    ("vice minister", "thứ trưởng"),
    ("ambassador extraordinary and plenipotentiary", "Đại sứ đặc mệnh toàn quyền"),
    ("consul general", "tổng lãnh sự"),
    ("Deputy Prime Minister", "Phó Thủ tướng"),
    ("Politburo", "Bộ Chính trị"),
    ("Cabinet Office", "Văn phòng Nội các"),
    ("consulate general", "tổng lãnh sự quán"),
    ("S&T representative office", "văn phòng đại diện KH&CN"),
    ("Japan", "Nhật Bản"),
    ("Hanoi", "Hà Nội"),
    ("Hoa Lac", "Hòa Lạc"),
    ("Phu Tho", "Phú Thọ"),
    ("France", "CH Pháp"),
    ("Switzerland", "Thụy Sĩ"),
    ("Tokyo", "Tô-ky-ô"),
    ("semiconductors", "bán dẫn"),
    ("artificial intelligence", "trí tuệ nhân tạo"),
    ("quantum", "lượng tử"),
    ("cloud computing", "điện toán đám mây"),
    ("green hydrogen", "hydrogen xanh"),
    ("liquefied gas", "khí hóa lỏng"),
    ("data centers", "trung tâm dữ liệu"),
    ("digital content", "nội dung số"),
    ("biotechnology", "công nghệ sinh học"),
    ("space", "vũ trụ"),
    ("Resolution 57", "Nghị quyết 57"),
    ("project", "đề án"),
    ("scheme", "đề án"),
    ("memorandum of understanding", "biên bản ghi nhớ"),
    ("who", "ai"),
    ("how many", "bao nhiêu"),
    ("why", "vì sao"),
    ("meet", "làm việc với"),
    ("visit", "chuyến công tác"),
    ("launch", "ra mắt"),
    ("sign", "ký kết"),
    ("speech", "phát biểu"),
    ("anniversary", "kỷ niệm"),
    ("diplomatic relations", "quan hệ ngoại giao"),
    ("strategic partnership", "đối tác chiến lược"),
    ("pillar", "trụ cột"),
    ("propose", "đề xuất"),
    ("support", "hỗ trợ"),
    ("connect", "kết nối"),
    ("year", "năm"),
    ("more than", "hơn"),
]

# Single English words that are common function words or pronouns: an entry for one of them would
# fire on ordinary questions ("it" -> IT, "us" -> US, "most" -> MOST, "may" -> May).
FUNCTION_WORDS = {
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "in", "is", "it", "may",
    "most", "no", "of", "on", "or", "so", "the", "to", "us", "was", "will", "with",
}  # fmt: skip

_EN_TOKEN = re.compile(r"[\w&]+(?:[-/.][\w&]+)*")  # the tokenisation of rag.lexicon


def test_lexicon_size_kinds_and_cells():
    rows = load_lexicon()
    assert len(rows) >= 600
    kinds = Counter(r.kind for r in rows)
    assert set(kinds) == {"term", "acronym", "org", "place", "role", "sector", "question", "policy"}
    for r in rows:
        assert r.en and r.vi and r.kind
        assert "|" not in r.en and "|" not in r.vi


def test_lexicon_has_no_duplicate_pairs():
    pairs = Counter((r.en.lower(), r.vi) for r in load_lexicon())
    assert not [p for p, n in pairs.items() if n > 1]


def test_lexicon_required_acronyms_present():
    forms = {r.en for r in load_lexicon()} | {r.vi for r in load_lexicon()}
    missing = [a for a in REQUIRED_ACRONYMS if a not in forms]
    assert not missing


@pytest.mark.parametrize(("en", "vi"), REQUIRED_PAIRS)
def test_lexicon_required_pair(en, vi):
    assert any(r.en == en and r.vi == vi for r in load_lexicon()), (en, vi)


def test_lexicon_english_terms_fit_the_matcher():
    """rag.lexicon matches phrases of at most 6 tokens; longer English entries would never fire."""
    too_long = [r.en for r in load_lexicon() if len(_EN_TOKEN.findall(r.en)) > 6]
    assert not too_long


def test_lexicon_has_no_function_word_entries():
    bad = [r.en for r in load_lexicon() if r.kind != "question" and r.en.lower() in FUNCTION_WORDS]
    assert not bad


def test_lexicon_vietnamese_is_accented():
    """Vietnamese renderings carry their diacritics (a tone-less copy would be a data-entry slip)."""
    plain_words = re.compile(
        r"\b(khoa hoc|cong nghe|doanh nghiep|hop tac|Viet Nam|Nhat Ban|dai su|bo truong)\b"
    )
    slips = [r.vi for r in load_lexicon() if plain_words.search(r.vi)]
    assert not slips


def test_question_words_stay_out_of_the_default_expander():
    """Question rows ('where' -> 'ở đâu') carry no topic; rag.answer would turn them into evidence terms
    that no passage contains, so the shipped expander must not use them."""
    from rag.lexicon import default_lexicon

    questions = [r for r in load_lexicon() if r.kind == "question"]
    assert {r.en for r in questions} >= {"who", "what", "when", "where", "which", "why", "how", "how many"}
    assert ("where", "ở đâu") in {(r.en, r.vi) for r in questions}
    exp = default_lexicon().expand("where when why")
    assert exp.matched == ()
    assert not {"ở đâu", "bao giờ", "vì sao"} & set(exp.vietnamese)


def test_lexicon_drives_the_query_expander():
    from rag.lexicon import Lexicon

    lexicon = Lexicon((r.en, r.vi) for r in load_lexicon())
    exp = lexicon.expand("Which deputy minister visited the Consulate General in Osaka?")
    assert "thứ trưởng" in exp.vietnamese
    assert "Tổng Lãnh sự quán Việt Nam tại Osaka" in exp.vietnamese
    exp = lexicon.expand("How many IT engineers work in Japan?")
    assert {"kỹ sư CNTT", "Nhật Bản", "bao nhiêu"} <= set(exp.vietnamese)
    assert "Ministry of Science and Technology" in lexicon.expand("Bộ KH&CN").english
