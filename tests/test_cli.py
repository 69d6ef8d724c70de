"""The `rag` command-line contract, exercised through real subprocesses.

One index is built per module with `rag ingest` (real Chroma, the real bundled embedding model); every
other run reads it or a copy of it. Each subprocess loads the model, so runs are kept few.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag.config import BUNDLED_MODEL

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"

QUESTION_VI = "Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?"
ENGINEERS_DOC = "pho-thu-tuong-gap-nha-khoa-hoc-viet-nam-tai-nhat-2025"
REFUSAL = {
    "en": "I couldn't find this in the documents.",
    "vi": "Không tìm thấy thông tin này trong tài liệu.",
}

ASK_KEYS = {
    "id",
    "question",
    "language",
    "answer",
    "refused",
    "backend",
    "citations",
    "retrieved",
    "timings_ms",
}
CITATION_KEYS = {"n", "chunk_id", "doc_id", "title", "source", "date", "url", "quote", "text"}
HIT_KEYS = {"chunk_id", "doc_id", "score", "text"}

# Lines on stderr that are not messages to the user: log records, progress bars, the CLI's WARNING notices.
_NOISE = re.compile(r"^(?:(?:DEBUG|INFO|WARNING|ERROR) [\w.]+: |WARNING: )|\d+%\|")


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def user_lines(self) -> list[str]:
        """stderr without log records and progress bars: what the user is told."""
        parts = (p.strip() for p in re.split(r"[\r\n]+", self.stderr))
        return [p for p in parts if p and not _NOISE.search(p)]


def rag(*args: str, home: Path, cwd: Path, corpus: Path = CORPUS) -> Run:
    """Run `python -m rag.cli ARGS` with a clean RAG_* environment, offline, from `cwd` (no .env there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_HOME=str(home),
        RAG_EMBEDDING_MODEL=BUNDLED_MODEL,
        RAG_CORPUS_DIR=str(corpus),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONIOENCODING="utf-8",
    )
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t)


_SUMMARY = re.compile(
    r"(\d+) added, (\d+) updated, (\d+) removed, (\d+) unchanged, (\d+) skipped; "
    r"(\d+) chunks embedded, (\d+) chunks in the index"
)


def summary(run: Run) -> dict[str, int]:
    match = _SUMMARY.search(run.stdout)
    assert match, f"no ingest summary in stdout: {run.stdout!r}"
    keys = ("added", "updated", "removed", "unchanged", "skipped", "embedded", "total")
    return dict(zip(keys, map(int, match.groups()), strict=True))


@dataclass
class Built:
    home: Path
    cwd: Path
    first: Run
    second: Run


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """The seed corpus ingested twice with the real CLI (the second run should be a no-op)."""
    home = tmp_path_factory.mktemp("cli-home")
    cwd = tmp_path_factory.mktemp("cli-cwd")
    first = rag("ingest", home=home, cwd=cwd)
    assert first.rc == 0, first.stderr
    second = rag("ingest", home=home, cwd=cwd)
    return Built(home, cwd, first, second)


@pytest.fixture
def home_copy(built, tmp_path) -> Path:
    """A writable copy of the module index, for runs that ingest."""
    dest = tmp_path / "home"
    shutil.copytree(built.home, dest)
    return dest


def chunk_store(home: Path) -> dict[str, dict[str, Any]]:
    with (home / "chunks.jsonl").open(encoding="utf-8") as f:
        return {d["chunk_id"]: d for d in map(json.loads, f)}


# ---------------------------------------------------------------- ingest


def test_ingest_prints_summary_and_second_run_embeds_nothing(built):
    first, second = summary(built.first), summary(built.second)
    manifest = json.loads((built.home / "manifest.json").read_text(encoding="utf-8"))
    n_chunks = sum(len(d["chunk_ids"]) for d in manifest["docs"].values())

    assert first["added"] == 5 and first["skipped"] == 0
    assert first["embedded"] == first["total"] == n_chunks > 0
    assert f"model {BUNDLED_MODEL}" in built.first.stdout
    assert manifest["embedding_model"] == BUNDLED_MODEL

    assert built.second.rc == 0, built.second.stderr
    assert "0 chunks embedded" in built.second.stdout
    assert (second["added"], second["updated"], second["removed"], second["unchanged"]) == (0, 0, 0, 5)
    assert second["total"] == n_chunks


# ---------------------------------------------------------------- ask --json


@pytest.fixture(scope="module")
def ask_vi(built) -> Run:
    return rag("ask", "--json", QUESTION_VI, home=built.home, cwd=built.cwd)


@pytest.fixture(scope="module")
def ask_vi_obj(ask_vi) -> dict[str, Any]:
    assert ask_vi.rc == 0, ask_vi.stderr
    lines = ask_vi.stdout.splitlines()
    assert len(lines) == 1, f"expected exactly one JSON line, got {ask_vi.stdout!r}"
    return json.loads(lines[0])


def test_ask_json_envelope(ask_vi_obj):
    obj = ask_vi_obj
    assert set(obj) >= ASK_KEYS, f"missing keys: {ASK_KEYS - set(obj)}"
    assert obj["id"] is None
    assert obj["question"] == QUESTION_VI
    assert obj["language"] == "vi"
    assert obj["refused"] is False
    assert obj["backend"] == "extractive"
    assert "5.000" in obj["answer"]
    assert set(obj["timings_ms"]) >= {"retrieve", "answer", "total"}
    for key in ("retrieve", "answer", "total"):
        value = obj["timings_ms"][key]
        assert isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    assert obj["timings_ms"]["total"] >= obj["timings_ms"]["retrieve"]


def test_ask_json_citations(ask_vi_obj, built):
    cites = ask_vi_obj["citations"]
    assert cites, "an answered question must cite its sources"
    assert [c["n"] for c in cites] == list(range(1, len(cites) + 1))
    store = chunk_store(built.home)
    for c in cites:
        assert set(c) >= CITATION_KEYS, f"missing keys: {CITATION_KEYS - set(c)}"
        assert c["quote"] and c["quote"] in c["text"]
        assert c["text"] == store[c["chunk_id"]]["text"]
        assert c["doc_id"] == store[c["chunk_id"]]["doc_id"]
    markers = {int(m) for m in re.findall(r"\[(\d+)\]", ask_vi_obj["answer"])}
    assert markers, "the answer has no [n] markers"
    assert markers <= {c["n"] for c in cites}
    top = next(c for c in cites if "5.000" in c["quote"])
    assert top["doc_id"] == ENGINEERS_DOC
    assert (top["source"], top["date"]) == ("chinhphu.vn", "2025-06-01")
    assert top["title"] == "Thiết lập nền tảng chung để kết nối các nhà khoa học Việt Nam tại Nhật Bản"


def test_ask_json_retrieved_hits(ask_vi_obj, built):
    hits = ask_vi_obj["retrieved"]
    assert 1 <= len(hits) <= 5  # default top_k
    store = chunk_store(built.home)
    for h in hits:
        assert set(h) >= HIT_KEYS, f"missing keys: {HIT_KEYS - set(h)}"
        assert isinstance(h["score"], float) and h["score"] > 0
        assert h["text"] == store[h["chunk_id"]]["text"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert ENGINEERS_DOC in {h["doc_id"] for h in hits}


@pytest.mark.parametrize(
    ("lang", "question"),
    [("en", "What is the population of Osaka?"), ("vi", "Dân số của Osaka là bao nhiêu?")],
)
def test_ask_unanswerable_question_is_refused(built, lang, question):
    run = rag("ask", "--json", question, home=built.home, cwd=built.cwd)
    assert run.rc == 0, run.stderr
    [obj] = run.json_lines()
    assert obj["question"] == question
    assert obj["language"] == lang
    assert obj["refused"] is True
    assert obj["citations"] == []
    assert obj["answer"] == REFUSAL[lang]


# ---------------------------------------------------------------- ask --batch


def test_ask_batch_answers_each_line_and_loads_models_once(built, ask_vi, tmp_path):
    batch = tmp_path / "questions.jsonl"
    lines = [
        json.dumps({"id": "q-vi", "question": "EMB-AI là gì và được ra mắt khi nào?"}, ensure_ascii=False),
        json.dumps({"id": 7, "question": "What is EMB-AI and when was it launched?"}),
        json.dumps({"id": "q-empty", "question": ""}),
        '{"id": "broken", "question": ',
    ]
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = rag("ask", "--batch", str(batch), "--json", home=built.home, cwd=built.cwd)

    assert run.rc == 0, run.stderr
    assert "Traceback" not in run.stderr
    out = run.json_lines()
    assert len(out) == 4, run.stdout

    vi, en, empty, broken = out
    assert vi["id"] == "q-vi" and vi["language"] == "vi" and vi["refused"] is False
    assert "EMB-AI" in vi["answer"] and vi["citations"]
    assert en["id"] == 7 and en["language"] == "en"
    assert set(en) >= ASK_KEYS
    assert en["answer"].startswith("According to the documents"), en["answer"]
    assert "EMB-AI" in en["answer"] and en["citations"] and en["refused"] is False

    assert empty["id"] == "q-empty"
    assert isinstance(empty["error"], str) and empty["error"].endswith(".")
    assert empty["error"] in ("Please type a question.", "Vui lòng nhập câu hỏi.")
    assert "answer" not in empty

    assert "answer" not in broken
    assert isinstance(broken["error"], str) and "JSON" in broken["error"]

    # Models load once per process: a 4-line batch shows as many model-loading bars as one question.
    assert run.stderr.count("Loading weights") == ask_vi.stderr.count("Loading weights")


# ---------------------------------------------------------------- retrieve


def test_retrieve_json_top_3(built):
    run = rag("retrieve", "--json", "-k", "3", "EMB-AI", home=built.home, cwd=built.cwd)
    assert run.rc == 0, run.stderr
    [obj] = run.json_lines()
    assert {"id", "question", "language", "retrieved"} <= set(obj)
    assert obj["question"] == "EMB-AI"
    assert obj["language"] in ("vi", "en")
    hits = obj["retrieved"]
    assert len(hits) == 3
    for h in hits:
        assert set(h) >= HIT_KEYS
    assert "EMB-AI" in hits[0]["text"]
    assert hits[0]["doc_id"] == ENGINEERS_DOC


def test_retrieve_batch(built, tmp_path):
    batch = tmp_path / "retrieve.jsonl"
    batch.write_text(
        json.dumps({"id": "a", "question": "EMB-AI"})
        + "\n"
        + json.dumps({"id": "b", "question": "Diễn đàn STS Kyoto"}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    run = rag("retrieve", "--batch", str(batch), "--json", "-k", "2", home=built.home, cwd=built.cwd)
    assert run.rc == 0, run.stderr
    out = run.json_lines()
    assert [o["id"] for o in out] == ["a", "b"]
    assert all(len(o["retrieved"]) == 2 for o in out)
    assert "EMB-AI" in out[0]["retrieved"][0]["text"]
    assert out[1]["retrieved"][0]["doc_id"] == "dien-dan-sts-kyoto-2023"


# ---------------------------------------------------------------- bad inputs


def assert_one_sentence(run: Run, *expected: str) -> str:
    """Non-zero exit, nothing on stdout, no traceback, and exactly one user-facing sentence on stderr."""
    assert run.rc != 0
    assert "Traceback" not in run.stderr and "Error:" not in run.stderr, run.stderr
    assert run.stdout.strip() == ""
    lines = run.user_lines()
    assert len(lines) == 1, f"expected one sentence on stderr, got {lines}"
    [line] = lines
    assert line.endswith("."), line
    assert any(e in line for e in expected), f"{line!r} does not mention any of {expected}"
    return line


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        pytest.param("", ("Vui lòng nhập câu hỏi.", "Please type a question."), id="empty"),
        pytest.param("   \t  ", ("Vui lòng nhập câu hỏi.", "Please type a question."), id="whitespace"),
        pytest.param(
            ("Việt Nam hợp tác với Nhật Bản về khoa học. " * 500)[:20_000], ("2.000",), id="20k-chars"
        ),
        pytest.param("?!...", ("không có từ nào", "no words"), id="punctuation"),
    ],
)
def test_ask_rejects_unusable_question(built, question, expected):
    run = rag("ask", question, home=built.home, cwd=built.cwd)
    assert_one_sentence(run, *expected)


@pytest.mark.parametrize("command", ["ask", "retrieve"])
def test_malformed_filter_date_is_one_sentence(built, command):
    run = rag(command, QUESTION_VI, "--date-to", "2025-13-01", home=built.home, cwd=built.cwd)
    assert_one_sentence(run, "2025-13-01")


def test_ask_without_index_says_run_ingest(tmp_path):
    empty_home = tmp_path / "empty-home"
    empty_home.mkdir()
    run = rag("ask", QUESTION_VI, home=empty_home, cwd=tmp_path)
    assert_one_sentence(run, "rag ingest")
    assert not (empty_home / "manifest.json").exists()


def test_ingest_empty_folder_leaves_index_unchanged(built, home_copy, tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    before = (home_copy / "manifest.json").read_bytes()
    run = rag("ingest", str(empty), home=home_copy, cwd=built.cwd)
    assert_one_sentence(run, "index was not changed", "chỉ mục không bị thay đổi")
    assert (home_copy / "manifest.json").read_bytes() == before


def test_ingest_skips_unreadable_files_and_index_still_answers(built, home_copy, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.txt").write_bytes(bytes(range(256)) * 16)  # binary: NUL bytes
    (bad / "latin.txt").write_bytes("Zusammenarbeit mit Japan: café, naïve, résumé, Ärger.".encode("latin-1"))
    (bad / "bad.pdf").write_bytes(b"this is not a PDF \x8f\x9a\xff" * 50)
    chunks_before = chunk_store(home_copy)

    run = rag("ingest", str(bad), home=home_copy, cwd=built.cwd)

    assert run.rc == 0, run.stderr
    assert "Traceback" not in run.stderr
    counts = summary(run)
    assert (counts["added"], counts["skipped"], counts["embedded"]) == (0, 3, 0)
    assert counts["total"] == len(chunks_before)
    skipped = {
        Path(m.group(1)).name: m.group(2) for m in re.finditer(r"^skipped (.+?): (.+)$", run.stderr, re.M)
    }
    assert set(skipped) == {"x.txt", "latin.txt", "bad.pdf"}, run.stderr
    assert "binary" in skipped["x.txt"]
    assert "UTF-8" in skipped["latin.txt"]
    assert "PDF" in skipped["bad.pdf"]
    assert chunk_store(home_copy) == chunks_before

    after = rag("ask", "--json", QUESTION_VI, home=home_copy, cwd=built.cwd)
    assert after.rc == 0, after.stderr
    [obj] = after.json_lines()
    assert obj["refused"] is False and "5.000" in obj["answer"]


def test_ask_each_quoted_sentence_is_its_own_substring_citation(built):
    """A question answered by several sentences: every `- sentence [n]` line is exactly citation n's quote."""
    question = "Phó Thủ tướng Nguyễn Chí Dũng đề nghị các nhà khoa học Việt Nam tại Nhật Bản làm gì?"
    run = rag("ask", "--json", question, home=built.home, cwd=built.cwd)
    assert run.rc == 0, run.stderr
    [obj] = run.json_lines()
    assert obj["refused"] is False
    lines = [m.groups() for m in re.finditer(r"^- (.+) \[(\d+)\]$", obj["answer"], re.M)]
    assert len(lines) >= 2, obj["answer"]
    by_n = {c["n"]: c for c in obj["citations"]}
    assert [c["n"] for c in obj["citations"]] == list(range(1, len(by_n) + 1))
    for sentence, n in lines:
        cite = by_n[int(n)]
        assert cite["quote"] == sentence
        assert cite["quote"] in cite["text"]
