"""Validate eval/datasets/gold.jsonl and the held-out set eval/datasets/heldout.jsonl: schema, mix of
questions, and that every evidence phrase is verbatim article-body text of the documents the question names
(not sidebar / related-news boilerplate). Both files run through the same checks; only the minimum counts of
the mix differ (MIX), and the held-out set must not repeat a gold question.

The seed articles are read from the repository's corpus/*.md (YAML front matter with `id:`) when that
folder has .md files, otherwise from the raw copies in /work/shared/seeds with the agreed document ids.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DATASETS = {"gold": REPO / "eval" / "datasets" / "gold.jsonl", "heldout": REPO / "eval" / "datasets" / "heldout.jsonl"}
CORPUS = REPO / "corpus"
SEEDS = Path("/work/shared/seeds")
SEED_IDS = {
    "000_bcefec711f6353a6.txt": "thu-truong-giang-lam-viec-dai-su-quan-nhat-ban",
    "001_6ceccb84835cfa2b.txt": "pho-thu-tuong-gap-nha-khoa-hoc-viet-nam-tai-nhat-2025",
    "002_10d5b8433ee610ce.txt": "bo-truong-dung-lam-viec-vjoin-2023",
    "003_de289e76bd2ee915.txt": "dien-dan-sts-kyoto-2023",
    "004_a8c3726514f1b35f.txt": "hop-tac-khcn-phap-unesco-wipo-2022",
}
# A line starting with one of these begins the site's related-news / footer block: nothing from that
# line on is article body.
BOILERPLATE_MARKERS = ("Tin bài liên quan", "BÀI VIẾT KHÁC", "Cùng chuyên mục", "Đọc nhiều", "Lượt xem:", "Tag:")

KEYS = {"id", "lang", "variant", "category", "answerable", "question", "answer", "evidence", "doc_ids", "follows",
        "with_distractors"}
REQUIRED = KEYS - {"follows", "with_distractors"}
VARIANTS = {"diacritics", "no_diacritics", "en"}
CATEGORIES = {"fact", "list", "connection", "followup", "unanswerable", "numeric", "tempting", "mixed-language"}
REFUSALS = {"vi": "Không tìm thấy thông tin này trong tài liệu.", "en": "I couldn't find this in the documents."}


@dataclass(frozen=True)
class Mix:
    """Minimum counts a dataset must reach (the held-out set is a smaller, independent sample)."""

    rows: int
    diacritics: int
    en: int
    no_diacritics: int
    unanswerable: int
    per_category: dict[str, int]
    followups: int
    tempting: int
    tempting_answerable_both: bool  # tempting questions both answerable and not
    mixed: int
    mixed_langs: frozenset[str]


MIX = {
    "gold": Mix(rows=100, diacritics=35, en=25, no_diacritics=15, unanswerable=20,
                per_category={c: 5 for c in ("fact", "list", "connection", "followup", "numeric")},
                followups=6, tempting=12, tempting_answerable_both=True, mixed=6,
                mixed_langs=frozenset({"vi", "en"})),
    "heldout": Mix(rows=45, diacritics=18, en=15, no_diacritics=10, unanswerable=15,
                   per_category={"fact": 10, "list": 3, "numeric": 3, "unanswerable": 6},
                   followups=0, tempting=6, tempting_answerable_both=False, mixed=2,
                   mixed_langs=frozenset({"en"})),
}


class Dataset(list):
    """The rows of one dataset file, with its name (a key of DATASETS / MIX)."""

    def __init__(self, name: str, rows: list[dict]):
        super().__init__(rows)
        self.name = name

    @property
    def mix(self) -> Mix:
        return MIX[self.name]


def squash(text: str) -> str:
    """NFC + whitespace collapsed to single spaces (case kept): how evidence is compared with the seeds."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def has_vietnamese_marks(text: str) -> bool:
    """True if any letter carries a Vietnamese tone / vowel mark, or is đ/Đ."""
    decomposed = unicodedata.normalize("NFD", text)
    return "đ" in text.lower() or any(unicodedata.combining(ch) for ch in decomposed)


def is_doubled_headline(line: str) -> bool:
    """A related-article link printed as 'Headline Headline' inside the body (alt text + link text)."""
    line = line.strip()
    half = (len(line) - 1) // 2
    return len(line) >= 20 and len(line) % 2 == 1 and line[half] == " " and line[:half] == line[half + 1 :]


def body_part(raw: str) -> str:
    """The raw page up to the first boilerplate marker line, without embedded related-article links.

    A related-article link ('Headline Headline') and the line right after it (its teaser, or a blank
    line) are removed: they sit before the markers but are not article text.
    """
    kept: list[str] = []
    lines = unicodedata.normalize("NFC", raw).split("\n")
    skip_next = False
    for line in lines:
        bare = line.strip().lstrip("•·▪-* ").strip()
        if any(bare.startswith(marker) for marker in BOILERPLATE_MARKERS):
            break
        if skip_next:
            skip_next = False
            continue
        if is_doubled_headline(bare):
            skip_next = True
            continue
        kept.append(line)
    return "\n".join(kept)


def _split_front_matter(text: str) -> tuple[dict, str]:
    if text.startswith("---"):
        end = re.search(r"^---[ \t]*$", text[3:], flags=re.MULTILINE)
        if end:
            meta = yaml.safe_load(text[3 : 3 + end.start()]) or {}
            return meta, text[3 + end.end() :].lstrip("\n")
    return {}, text


def load_seed_texts() -> dict[str, str]:
    """doc id -> raw page text (front matter removed)."""
    md_files = sorted(CORPUS.glob("*.md")) if CORPUS.is_dir() else []
    if md_files:
        docs = {}
        for path in md_files:
            meta, body = _split_front_matter(path.read_text(encoding="utf-8"))
            docs[str(meta.get("id") or path.stem)] = body
        return docs
    if not SEEDS.is_dir():
        pytest.skip("no corpus/*.md and no /work/shared/seeds to check evidence against")
    return {SEED_IDS.get(p.name, p.stem): p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))}


def read_dataset(name: str) -> Dataset:
    path = DATASETS[name]
    raw = path.read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", raw), f"{path.name} must be NFC"
    rows = []
    for n, line in enumerate(raw.splitlines(), 1):
        assert line.strip(), f"{path.name} line {n} is blank"
        rows.append(json.loads(line))
    return Dataset(name, rows)


@pytest.fixture(scope="module", params=sorted(DATASETS))
def gold(request) -> Dataset:
    """Each dataset in turn (the fixture keeps its historical name)."""
    return read_dataset(request.param)


@pytest.fixture(scope="module")
def seeds() -> dict[str, str]:
    return load_seed_texts()


@pytest.fixture(scope="module")
def bodies(seeds) -> dict[str, str]:
    return {doc_id: squash(body_part(text)) for doc_id, text in seeds.items()}


# ------------------------------------------------------------------------------------------ schema

def test_schema_and_types(gold):
    for row in gold:
        qid = row.get("id")
        assert isinstance(qid, str) and qid, row
        assert set(row) >= REQUIRED, f"{qid}: missing {REQUIRED - set(row)}"
        assert set(row) <= KEYS, f"{qid}: unknown keys {set(row) - KEYS}"
        assert row["lang"] in {"vi", "en"}, qid
        assert row["variant"] in VARIANTS, qid
        assert (row["lang"] == "en") == (row["variant"] == "en"), f"{qid}: lang/variant mismatch"
        assert row["category"] in CATEGORIES, qid
        assert isinstance(row["answerable"], bool), qid
        for key in ("question", "answer"):
            assert isinstance(row[key], str) and row[key].strip() == row[key] and row[key], f"{qid}: {key}"
        assert isinstance(row["evidence"], list) and all(isinstance(e, str) and e.strip() for e in row["evidence"]), qid
        assert isinstance(row["doc_ids"], list) and all(isinstance(d, str) and d for d in row["doc_ids"]), qid
        assert len(set(row["doc_ids"])) == len(row["doc_ids"]), f"{qid}: duplicate doc_ids"
        if "follows" in row:
            assert isinstance(row["follows"], str) and row["follows"], qid


def test_ids_unique(gold):
    counts = Counter(row["id"] for row in gold)
    assert not [i for i, c in counts.items() if c > 1], "duplicate ids"


def test_follows_points_to_an_earlier_question(gold):
    seen: set[str] = set()
    n_followups = 0
    for row in gold:
        if "follows" in row:
            assert row["follows"] in seen, f"{row['id']} follows {row['follows']!r}, not an earlier id"
            assert row["category"] == "followup", f"{row['id']}: has `follows` but category {row['category']}"
            n_followups += 1
        else:
            assert row["category"] != "followup", f"{row['id']}: a followup needs `follows`"
        seen.add(row["id"])
    assert n_followups >= gold.mix.followups


def test_answerable_and_unanswerable_fields(gold):
    for row in gold:
        if row["answerable"]:
            assert 1 <= len(row["evidence"]) <= 3, f"{row['id']}: 1-3 evidence phrases"
            assert row["doc_ids"], f"{row['id']}: answerable question without doc_ids"
            assert row["category"] != "unanswerable", row["id"]
            assert row["answer"] not in REFUSALS.values(), row["id"]
        else:
            assert row["evidence"] == [] and row["doc_ids"] == [], row["id"]
            assert row["answer"] == REFUSALS[row["lang"]], row["id"]
        if row["category"] == "unanswerable":
            assert not row["answerable"], row["id"]


def test_mix_of_questions(gold):
    mix = gold.mix
    variants = Counter(row["variant"] for row in gold)
    categories = Counter(row["category"] for row in gold)
    unanswerable = [row for row in gold if not row["answerable"]]
    assert len(gold) >= mix.rows
    assert (variants["diacritics"] >= mix.diacritics and variants["en"] >= mix.en
            and variants["no_diacritics"] >= mix.no_diacritics), variants
    assert len(unanswerable) >= mix.unanswerable
    assert {row["variant"] for row in unanswerable} == VARIANTS, "unanswerable questions in all three variants"
    for category, minimum in mix.per_category.items():
        assert categories[category] >= minimum, categories


def test_question_text_matches_variant(gold):
    for row in gold:
        q = row["question"]
        if row["variant"] == "no_diacritics":
            assert not has_vietnamese_marks(q) and q.isascii(), f"{row['id']}: marks in {q!r}"
        elif row["variant"] == "diacritics":
            assert has_vietnamese_marks(q), f"{row['id']}: no Vietnamese marks in {q!r}"


def test_questions_are_unique(gold):
    counts = Counter(squash(row["question"]).lower() for row in gold)
    assert not [q for q, c in counts.items() if c > 1]


# ------------------------------------------------------------------------------------------ evidence

def test_doc_ids_exist_and_cover_the_corpus(gold, seeds):
    used: set[str] = set()
    for row in gold:
        for doc_id in row["doc_ids"]:
            assert doc_id in seeds, f"{row['id']}: unknown doc id {doc_id!r} (known: {sorted(seeds)})"
        used.update(row["doc_ids"])
    assert used == set(seeds), f"documents without questions: {set(seeds) - used}"


def test_evidence_phrase_length(gold):
    problems = []
    for row in gold:
        for phrase in row["evidence"]:
            if not 3 <= len(phrase.split()) <= 15:
                problems.append(f"{row['id']}: {len(phrase.split())} words: {phrase!r}")
            if squash(phrase) != phrase:
                problems.append(f"{row['id']}: stray whitespace in {phrase!r}")
    assert not problems, "\n".join(problems)


def test_evidence_is_verbatim_article_body(gold, seeds, bodies):
    """Each phrase occurs (NFC + whitespace collapse, case-sensitive) in the body part of one of the
    question's documents, i.e. before the first boilerplate marker line and outside related-article links."""
    whole = {doc_id: squash(text) for doc_id, text in seeds.items()}
    problems = []
    for row in gold:
        for phrase in row["evidence"]:
            p = squash(phrase)
            if not any(p in whole[d] for d in row["doc_ids"] if d in whole):
                problems.append(f"{row['id']}: not in its documents at all: {phrase!r}")
            elif not any(p in bodies[d] for d in row["doc_ids"] if d in bodies):
                problems.append(f"{row['id']}: only in boilerplate: {phrase!r}")
    assert not problems, "\n".join(problems)


def test_every_document_of_a_question_has_evidence(gold, bodies):
    for row in gold:
        for doc_id in row["doc_ids"]:
            assert any(squash(p) in bodies.get(doc_id, "") for p in row["evidence"]), (
                f"{row['id']}: no evidence phrase comes from {doc_id}")


def test_evidence_does_not_point_to_other_documents(gold, bodies):
    """Distinctive phrases: case-insensitively (as the metrics match) they occur only in the question's documents."""
    lowered = {doc_id: body.lower() for doc_id, body in bodies.items()}
    for row in gold:
        for phrase in row["evidence"]:
            others = [d for d, body in lowered.items() if d not in row["doc_ids"] and squash(phrase).lower() in body]
            assert not others, f"{row['id']}: {phrase!r} also occurs in {others}"


def test_evidence_survives_ingest_cleaning(gold, seeds):
    """The phrases must still be there after the real boilerplate cleaner (what gets indexed)."""
    clean = pytest.importorskip("rag.clean")
    cleaned = {doc_id: squash(clean.clean_text(text)[0]) for doc_id, text in seeds.items()}
    for row in gold:
        for phrase in row["evidence"]:
            assert any(squash(phrase) in cleaned[d] for d in row["doc_ids"]), (
                f"{row['id']}: {phrase!r} is removed by rag.clean")


def test_body_part_cuts_boilerplate(seeds):
    """The body/boilerplate split itself: sidebar stories are cut, article sentences are kept."""
    sts = squash(body_part(seeds["dien-dan-sts-kyoto-2023"]))
    assert "Takaichi Sanae" in sts and "Nghị định số 263/2025/NĐ-CP" not in sts and "Lượt xem" not in sts
    france = squash(body_part(seeds["hop-tac-khcn-phap-unesco-wipo-2022"]))
    assert "Hubert Curien" in france and "Vinamilk" not in france and "Bhutan" not in france
    assert "Đà Nẵng và các đối tác Nhật Bản" not in france and "Venezuela" not in france
    dpm = squash(body_part(seeds["pho-thu-tuong-gap-nha-khoa-hoc-viet-nam-tai-nhat-2025"]))
    assert "EMB-AI" in dpm and "Kim Liên" not in dpm


def test_tempting_and_mixed_language_questions(gold):
    """Questions distractors make tempting (wrong year, other country, other city), answerable and not, and
    questions mixing the languages (English with Vietnamese names in diacritics, Vietnamese quoting English)."""
    mix = gold.mix
    tempting = [r for r in gold if r["category"] == "tempting"]
    mixed = [r for r in gold if r["category"] == "mixed-language"]
    assert len(tempting) >= mix.tempting
    assert {r["answerable"] for r in tempting} == ({True, False} if mix.tempting_answerable_both else {False})
    assert {r["variant"] for r in tempting} == VARIANTS
    assert len(mixed) >= mix.mixed and {r["lang"] for r in mixed} == mix.mixed_langs
    for r in mixed:
        if r["lang"] == "en":
            assert has_vietnamese_marks(r["question"]), r["id"]
        else:
            assert re.search(r"\b[A-Z][A-Za-z]+\b.*\b[A-Z]{2,}|\b[A-Z]{2,}", r["question"]), r["id"]


# ------------------------------------------------------------------------------------------ held-out set

def _plain(text: str) -> str:
    """Lower-case, without Vietnamese marks or punctuation: how near-duplicate questions are compared."""
    decomposed = unicodedata.normalize("NFD", squash(text).lower().replace("đ", "d"))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(re.findall(r"\w+", bare))


def test_heldout_does_not_repeat_gold_questions():
    """The held-out set checks that tuning on gold generalises: no question of it is a gold question, nor a
    near copy of one (same words with or without diacritics, or a character-level similarity >= 0.8)."""
    gold_questions = {_plain(row["question"]): row["id"] for row in read_dataset("gold")}
    heldout = read_dataset("heldout")
    problems = []
    for row in heldout:
        q = _plain(row["question"])
        if q in gold_questions:
            problems.append(f"{row['id']} repeats {gold_questions[q]}")
            continue
        for g, gid in gold_questions.items():
            if SequenceMatcher(None, q, g).ratio() >= 0.8:
                problems.append(f"{row['id']} is a near copy of {gid}: {row['question']!r}")
    assert not problems, "\n".join(problems)
    assert not {row["id"] for row in heldout} & {row["id"] for row in read_dataset("gold")}, "ids shared with gold"


def test_gold_with_distractors_is_verbatim_in_a_ci_distractor():
    """A question a distractor article answers carries that article's evidence for the run with distractors:
    the phrase is verbatim in an article of the CI list whose ingested id is the one named."""
    import os

    from eval.distractors import iter_archive, read_list
    from rag.load import slugify

    rows = [json.loads(line) for line in DATASETS["gold"].read_text(encoding="utf-8").splitlines() if line.strip()]
    overrides = {row["id"]: row["with_distractors"] for row in rows if row.get("with_distractors")}
    assert overrides, "the gold set names the questions a distractor answers"
    for qid, o in overrides.items():
        assert o["note"].strip() and o.get("answerable") is True and o["evidence"] and o["doc_ids"], qid
    candidates = [os.environ.get("RAG_DISTRACTOR_SOURCE") or "", REPO.parent / "shared" / "corpora" / "viwiki.tar.xz",
                  Path("/work/shared/corpora/viwiki.tar.xz")]
    source = next((Path(c) for c in candidates if str(c) and Path(c).exists()), None)
    if source is None:
        pytest.skip("the viwiki archive is not on this machine (RAG_DISTRACTOR_SOURCE)")
    listed = set(read_list(REPO / "eval" / "distractors" / "ci.txt"))
    texts = {slugify(a.title): a.text for a in iter_archive(source) if a.name in listed}
    for qid, o in overrides.items():
        for doc_id in o["doc_ids"]:
            assert doc_id in texts, f"{qid}: {doc_id} is not a CI distractor"
        for phrase in o["evidence"]:
            assert any(phrase in texts[d] for d in o["doc_ids"]), f"{qid}: {phrase!r} not in {o['doc_ids']}"
