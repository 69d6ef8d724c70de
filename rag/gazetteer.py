"""Hand-reviewed reference tables shipped in rag/data/: the EN<->VI domain lexicon, Vietnamese provinces,
Japanese places, organisations and sectors.

Every table is a UTF-8, tab-separated file with a header line, one record per line, text in NFC.
Multi-valued cells (aliases) are '|'-separated; an empty cell means "none". Loading is strict: a wrong
header or column count raises GazetteerError naming the file and line, so a bad edit fails loudly.

Provinces: the 63 provincial-level units that existed until 30 June 2025, each mapped to the one of the
34 units that absorbed it from 1 July 2025 (Resolution 202/2025/QH15); the 11 units that were not
merged map to themselves. Every new unit kept the name of one of its members, so every new name is
also an old name.

Standard library only (plus unicodedata), so importing this module is cheap.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

DATA_DIR = Path(__file__).resolve().parent / "data"

LEXICON_KINDS = frozenset({"term", "acronym", "org", "place", "role", "sector", "question", "policy"})
JP_PLACE_KINDS = frozenset({"prefecture", "city", "region"})
ORGANIZATION_KINDS = frozenset(
    {
        "government",
        "legislature",
        "party",
        "ministry",
        "agency",
        "council",
        "bank",
        "fund",
        "innovation_center",
        "research_institute",
        "university",
        "high_tech_park",
        "chamber",
        "embassy",
        "consulate",
        "representative_office",
        "network",
        "association",
        "forum",
        "international_org",
    }
)

LEXICON_COLUMNS = ("en", "vi", "kind")
PROVINCE_COLUMNS = ("old_name", "new_name", "old_ascii", "new_ascii", "aliases")
JP_PLACE_COLUMNS = ("name_en", "name_vi", "kind", "aliases")
ORGANIZATION_COLUMNS = ("id", "acronym", "name_vi", "name_en", "kind", "country", "aliases")
SECTOR_COLUMNS = ("id", "name_en", "name_vi", "aliases")


class GazetteerError(ValueError):
    """A data file in rag/data/ is malformed (wrong header, column count or value)."""


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class LexiconEntry:
    """One English<->Vietnamese pair; an English term has one entry per Vietnamese variant."""

    en: str
    vi: str
    kind: str  # one of LEXICON_KINDS


@dataclass(frozen=True)
class Province:
    """A pre-merger province or centrally-run city and the post-1-July-2025 unit that absorbed it."""

    old_name: str
    new_name: str
    old_ascii: str  # old_name lower-cased without diacritics
    new_ascii: str
    aliases: tuple[str, ...]

    @property
    def merged(self) -> bool:
        """True when the unit was absorbed into another one (its name disappeared)."""
        return self.old_name != self.new_name


@dataclass(frozen=True)
class JpPlace:
    """A Japanese prefecture, city or region with the spelling used in Vietnamese text."""

    name_en: str
    name_vi: str
    kind: str  # one of JP_PLACE_KINDS
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Organization:
    """A ministry, agency, mission, network or international body."""

    id: str
    acronym: str  # may be empty
    name_vi: str
    name_en: str
    kind: str  # one of ORGANIZATION_KINDS
    country: str  # ISO 3166-1 alpha-2 of the state it belongs to, or "INT" for international bodies
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Sector:
    """A technology or economic sector with English and Vietnamese synonyms."""

    id: str
    name_en: str
    name_vi: str
    aliases: tuple[str, ...]


class ProvinceMatch(NamedTuple):
    """Result of province_lookup: the pre-merger name (None if only a new name matched) and the new one."""

    old_name: str | None
    new_name: str


# ---------------------------------------------------------------- text helpers


def nfc(text: str) -> str:
    """Unicode NFC normalisation."""
    return unicodedata.normalize("NFC", text)


def strip_diacritics(text: str) -> str:
    """'Đắk Lắk' -> 'Dak Lak': NFD, combining marks dropped, đ/Đ mapped to d/D, result in NFC."""
    decomposed = unicodedata.normalize("NFD", nfc(text).replace("đ", "d").replace("Đ", "D"))
    return nfc("".join(c for c in decomposed if not unicodedata.combining(c)))


def name_key(text: str) -> str:
    """Comparison key for names: no diacritics, lower case, punctuation and spacing collapsed.

    'TP.HCM' -> 'tp hcm', 'Bà Rịa–Vũng Tàu' -> 'ba ria vung tau', 'Hoà Bình' == 'Hòa Bình'.
    """
    return " ".join(re.findall(r"[^\W_]+", strip_diacritics(text).lower()))


def split_aliases(cell: str) -> tuple[str, ...]:
    """'a|b| c' -> ('a', 'b', 'c'); an empty cell gives ()."""
    return tuple(a.strip() for a in cell.split("|") if a.strip())


# ---------------------------------------------------------------- loading


def read_tsv(filename: str, columns: Sequence[str], data_dir: Path | None = None) -> list[tuple[str, ...]]:
    """Rows of rag/data/<filename> as tuples of NFC, whitespace-trimmed cells; the header is checked.

    Blank lines are skipped. Raises GazetteerError for a missing file, a wrong header or a row with
    the wrong number of columns.
    """
    path = (data_dir or DATA_DIR) / filename
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GazetteerError(f"{path}: cannot read ({exc})") from exc
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or tuple(lines[0].rstrip("\r").split("\t")) != tuple(columns):
        found = lines[0] if lines else "<empty file>"
        raise GazetteerError(f"{path}:1: expected header {'<TAB>'.join(columns)!r}, found {found!r}")
    rows: list[tuple[str, ...]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split("\t")
        if len(cells) != len(columns):
            raise GazetteerError(f"{path}:{lineno}: expected {len(columns)} columns, found {len(cells)}")
        rows.append(tuple(nfc(c).strip() for c in cells))
    return rows


def _require(value: str, what: str, filename: str, row: int) -> str:
    if not value:
        raise GazetteerError(f"{filename}: record {row}: empty {what}")
    return value


def _check_kind(kind: str, allowed: frozenset[str], filename: str, row: int) -> str:
    if kind not in allowed:
        raise GazetteerError(f"{filename}: record {row}: unknown kind {kind!r} (allowed: {sorted(allowed)})")
    return kind


@cache
def load_lexicon() -> tuple[LexiconEntry, ...]:
    """The EN<->VI domain lexicon (rag/data/lexicon_en_vi.tsv), in file order."""
    name = "lexicon_en_vi.tsv"
    out = []
    for i, (en, vi, kind) in enumerate(read_tsv(name, LEXICON_COLUMNS), start=1):
        out.append(
            LexiconEntry(
                _require(en, "en", name, i),
                _require(vi, "vi", name, i),
                _check_kind(kind, LEXICON_KINDS, name, i),
            )
        )
    return tuple(out)


@cache
def load_provinces() -> tuple[Province, ...]:
    """The 63 pre-merger provinces/cities with the post-merger unit each belongs to (rag/data/provinces.tsv)."""
    name = "provinces.tsv"
    out = []
    for i, (old, new, old_ascii, new_ascii, aliases) in enumerate(read_tsv(name, PROVINCE_COLUMNS), start=1):
        out.append(
            Province(
                _require(old, "old_name", name, i),
                _require(new, "new_name", name, i),
                _require(old_ascii, "old_ascii", name, i),
                _require(new_ascii, "new_ascii", name, i),
                split_aliases(aliases),
            )
        )
    return tuple(out)


@cache
def load_jp_places() -> tuple[JpPlace, ...]:
    """Japanese prefectures (47), major cities and regions (rag/data/jp_places.tsv)."""
    name = "jp_places.tsv"
    out = []
    for i, (name_en, name_vi, kind, aliases) in enumerate(read_tsv(name, JP_PLACE_COLUMNS), start=1):
        out.append(
            JpPlace(
                _require(name_en, "name_en", name, i),
                _require(name_vi, "name_vi", name, i),
                _check_kind(kind, JP_PLACE_KINDS, name, i),
                split_aliases(aliases),
            )
        )
    return tuple(out)


@cache
def load_organizations() -> tuple[Organization, ...]:
    """Ministries, agencies, missions, networks and international bodies (rag/data/organizations.tsv)."""
    name = "organizations.tsv"
    out = []
    rows = read_tsv(name, ORGANIZATION_COLUMNS)
    for i, (org_id, acronym, name_vi, name_en, kind, country, aliases) in enumerate(rows, start=1):
        out.append(
            Organization(
                _require(org_id, "id", name, i),
                acronym,
                _require(name_vi, "name_vi", name, i),
                _require(name_en, "name_en", name, i),
                _check_kind(kind, ORGANIZATION_KINDS, name, i),
                _require(country, "country", name, i),
                split_aliases(aliases),
            )
        )
    return tuple(out)


@cache
def load_sectors() -> tuple[Sector, ...]:
    """Technology and economic sectors with synonyms (rag/data/sectors.tsv)."""
    name = "sectors.tsv"
    out = []
    for i, (sector_id, name_en, name_vi, aliases) in enumerate(read_tsv(name, SECTOR_COLUMNS), start=1):
        out.append(
            Sector(
                _require(sector_id, "id", name, i),
                _require(name_en, "name_en", name, i),
                _require(name_vi, "name_vi", name, i),
                split_aliases(aliases),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------- provinces

# Administrative prefixes/suffixes ignored by province_lookup ('tỉnh Vĩnh Phúc', 'TP. Cần Thơ',
# 'Phu Tho province', 'Bình Dương (cũ)').
_PREFIXES = ("thanh pho ", "tinh ", "tp ")
_SUFFIXES = (" province", " city", " cu", " moi")


@cache
def _province_index() -> dict[str, ProvinceMatch]:
    index: dict[str, ProvinceMatch] = {}
    provinces = load_provinces()
    for p in provinces:
        match = ProvinceMatch(p.old_name, p.new_name)
        for form in (p.old_name, p.old_ascii, *p.aliases):
            index.setdefault(name_key(form), match)
    for p in provinces:  # a post-merger name that was never a pre-merger name (none today)
        index.setdefault(name_key(p.new_name), ProvinceMatch(None, p.new_name))
    return index


def province_lookup(name: str) -> ProvinceMatch | None:
    """Resolve a province or centrally-run city name, old or new, to (old_name or None, new_name).

    Case-, diacritic- and punctuation-insensitive; accepts aliases ('TP.HCM', 'Sài Gòn', 'Hanoi') and
    administrative words ('tỉnh Vĩnh Phúc', 'Phu Tho province'). A name that is both an old and a new
    name ('Phú Thọ') resolves to itself. Returns None for an unknown name.

    >>> province_lookup("vinh phuc")
    ProvinceMatch(old_name='Vĩnh Phúc', new_name='Phú Thọ')
    """
    key = name_key(name)
    if not key:
        return None
    index = _province_index()
    candidates = [key]
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            candidates.append(key[len(prefix) :])
    for cand in list(candidates):
        for suffix in _SUFFIXES:
            if cand.endswith(suffix):
                candidates.append(cand[: -len(suffix)])
    for cand in candidates:
        if cand in index:
            return index[cand]
    return None


def new_province_names() -> tuple[str, ...]:
    """The 34 provincial-level units in force from 1 July 2025, in file order."""
    return tuple(dict.fromkeys(p.new_name for p in load_provinces()))


def merged_into(new_name: str) -> tuple[str, ...]:
    """Pre-merger units that form the post-merger unit `new_name` (any accepted spelling); () if unknown."""
    match = province_lookup(new_name)
    if match is None:
        return ()
    return tuple(p.old_name for p in load_provinces() if p.new_name == match.new_name)
