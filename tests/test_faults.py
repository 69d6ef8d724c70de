"""Faults as property tests: ingest killed at random points, a full disk, a Chroma server that stops.

After each fault the invariant check (`rag.check.check_index`) must pass once ingest has run again, and
no document may be missing or duplicated.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.check import Problem, check_index
from tests.conftest import CORPUS, REPO, make_settings

pytestmark = pytest.mark.slow

RUNS = 20
SEED = 20251202


def _small_docs() -> dict[str, str]:
    """Ten small documents cut from the seed corpus (two halves of each article's body)."""
    from rag.load import load_file

    docs = {}
    for path in sorted(CORPUS.glob("*.md")):
        paragraphs = [p for p in load_file(path).text.split("\n\n") if p.strip()]
        half = max(1, len(paragraphs) // 2)
        for i, part in enumerate((paragraphs[:half], paragraphs[half : half + 4])):
            if part:
                docs[f"{path.stem[:24].rstrip('-')}-{i}"] = "\n\n".join(part[:4])
    return docs


def _write_corpus(folder: Path, docs: dict[str, str], names: list[str], revision: dict[str, int]) -> None:
    for old in folder.glob("*.md"):
        if old.stem not in names:
            old.unlink()
    for name in names:
        text = docs[name] + (f"\n\nCập nhật lần {revision[name]}." if revision.get(name) else "")
        (folder / f"{name}.md").write_text(f"---\ntitle: {name}\n---\n{text}\n", encoding="utf-8")


class ForkServer:
    """tests/fault_worker.py: forks one ingest process per request, reports its pid and wait status."""

    def __init__(self, scratch: Path) -> None:
        env_python = sys.executable
        self.proc = subprocess.Popen(
            [env_python, "-m", "tests.fault_worker", str(scratch)], cwd=REPO, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )
        assert json.loads(self.proc.stdout.readline()).get("ready")

    def start(self, home: Path, corpus: Path, **extra: object) -> int:
        self.proc.stdin.write(json.dumps({"home": str(home), "corpus": str(corpus), **extra}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["pid"]

    def wait(self) -> int:
        return json.loads(self.proc.stdout.readline())["status"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _assert_consistent(home: Path, corpus: Path, embedder) -> None:
    """Re-run ingest (in this process, on a copy) and check invariants and the document set."""
    from rag.index import Index

    settings = make_settings(home, corpus_dir=corpus)
    Index.open(settings, must_exist=False).sync([corpus], embedder)
    problems = check_index(settings)
    assert problems == [], [p.message() for p in problems]
    manifest = json.loads(settings.manifest_path.read_text(encoding="utf-8"))
    expected = sorted(p.stem for p in corpus.glob("*.md"))
    assert sorted(manifest["docs"]) == expected  # nothing missing, nothing extra
    chunks = [json.loads(line) for line in (home / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted({c["doc_id"] for c in chunks}) == expected
    assert len({(c["doc_id"], c["position"]) for c in chunks}) == len(chunks)  # no chunk twice


def test_ingest_killed_at_random_points_recovers(tmp_path, embedder):
    rng = random.Random(SEED)
    docs = _small_docs()
    names = sorted(docs)
    corpus, home = tmp_path / "corpus", tmp_path / "home"
    corpus.mkdir()
    current = names[:6]
    revision: dict[str, int] = {}
    _write_corpus(corpus, docs, current, revision)
    server = ForkServer(tmp_path / "scratch")
    try:
        t0 = time.monotonic()
        server.start(home, corpus)
        assert server.wait() == 0  # a complete first build; its duration calibrates the kill points
        full = time.monotonic() - t0
        killed = 0
        for run in range(RUNS):
            # Change the corpus: edit one document, add one, remove one (seeded).
            edit = rng.choice(current)
            revision[edit] = revision.get(edit, 0) + 1
            spare = [n for n in names if n not in current]
            if spare and rng.random() < 0.7:
                current.append(rng.choice(spare))
            if len(current) > 4 and rng.random() < 0.5:
                current.remove(rng.choice([n for n in current if n != edit]))
            _write_corpus(corpus, docs, current, revision)
            pid = server.start(home, corpus)
            time.sleep(rng.uniform(0.0, 0.6 * full))  # incremental runs are shorter than the first build
            try:
                import os

                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = server.wait()
            killed += int(status != 0)
            verify = tmp_path / f"verify-{run}"
            shutil.copytree(home, verify)
            _assert_consistent(verify, corpus, embedder)
            shutil.rmtree(verify)
        assert killed >= RUNS // 4, f"only {killed} of {RUNS} runs were interrupted; the kill points miss ingest"
    finally:
        server.close()


def test_check_reports_each_broken_store_with_a_repair(tmp_path, seed_home):
    home = tmp_path / "home"
    shutil.copytree(seed_home, home)
    settings = make_settings(home)
    assert check_index(settings) == []
    lines = (home / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    (home / "chunks.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n", encoding="utf-8")  # a duplicate
    (home / "bm25" / "plain" / "ids.json").write_text(json.dumps(["x"]), encoding="utf-8")
    (home / "entities.jsonl").unlink()
    problems = check_index(settings)
    text = " | ".join(p.message() for p in problems)
    assert "chunks.jsonl" in text and "duplicated" in text
    assert "BM25 field 'plain'" in text and "entities.jsonl is missing" in text
    assert all(isinstance(p, Problem) and "rag ingest" in p.message() and "rag ingest" in p.message("vi")
               for p in problems)
    # Chroma out of step with the chunk store is reported too.
    from rag.index import Index

    Index(settings).collection().delete(ids=[json.loads(lines[0])["chunk_id"]])
    assert any("Chroma" in p.message() for p in check_index(settings))


def test_disk_full_during_ingest_keeps_the_previous_index(tmp_path, loaded_embedder):
    """Ingest with file writes capped (RLIMIT_FSIZE in the ingest process, like a full disk): one clear
    sentence, and the previous index still opens, passes the check and answers."""
    from rag.chain import Pipeline
    from rag.index import Index
    from rag.lexicon import default_lexicon

    embedder = loaded_embedder.embedder
    docs = _small_docs()
    names = sorted(docs)
    corpus, home = tmp_path / "corpus", tmp_path / "home"
    corpus.mkdir()
    _write_corpus(corpus, docs, names[:3], {})
    settings = make_settings(home, corpus_dir=corpus)
    Index.open(settings, must_exist=False).sync([corpus], embedder)
    before = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()}
    biggest = max(len(b) for name, b in before.items() if name.endswith(".jsonl"))

    _write_corpus(corpus, docs, names, {})  # seven more documents: every store must grow
    server = ForkServer(tmp_path / "scratch")
    try:
        result_path = tmp_path / "result.json"
        server.start(home, corpus, result=str(result_path), fsize=biggest + 512)
        server.wait()
    finally:
        server.close()
    result = json.loads(result_path.read_text(encoding="utf-8"))
    assert result["ok"] is False and result["rag_error"] is True, result
    assert "disk is full" in result["en"] and "ổ đĩa đã đầy" in result["vi"].lower()
    assert "\n" not in result["en"] and "Traceback" not in result["en"]
    after = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file() and p.name in before}
    assert after == before  # manifest, chunk store, tokens, entities and vectors untouched
    loaded_index = Index.open(settings)
    assert sorted(loaded_index.manifest["docs"]) == sorted(names[:3])
    p = Pipeline(settings, loaded_embedder, loaded_index, default_lexicon())
    first = json.loads((home / "chunks.jsonl").read_text(encoding="utf-8").splitlines()[0])
    answer = p.ask(first["text"].split(".")[0][:200])
    assert not answer.refused and answer.citations
    # Chroma may hold vectors the failed run added; the check says so and one more ingest repairs it.
    problems = check_index(settings)
    assert all("Chroma" in pr.message() for pr in problems)
    Index.open(settings).sync([corpus], embedder)
    assert check_index(settings) == []


def test_storage_error_recognises_out_of_space_only():
    import errno

    from rag.guard import StorageFull, storage_error

    assert isinstance(storage_error(OSError(errno.ENOSPC, "No space left on device")), StorageFull)
    assert isinstance(storage_error(OSError(errno.EFBIG, "File too large")), StorageFull)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert isinstance(storage_error(outer), StorageFull)
    assert storage_error(OSError(errno.ENOENT, "missing")) is None
    assert storage_error(ValueError("bad value")) is None


def test_chroma_server_stopped_mid_use_gives_a_sentence_and_answers_resume(tmp_path, loaded_embedder):
    """A real `chroma run` server stops while questions are being answered, then comes back on the same
    port and data: every failure in between is one clear sentence, and the same Pipeline answers again
    without a restart."""
    import threading

    from rag.chain import Pipeline
    from rag.errors import RagError
    from rag.index import Index
    from rag.lexicon import default_lexicon
    from tests.servers import free_port, running_server
    from tests.test_chroma_server import QUESTION_VI, _chroma_cli

    data, port = tmp_path / "chroma-data", free_port()
    command = [_chroma_cli(), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)]
    ready = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    # exact_search_max_rows=0: every dense search is a request to the server.
    settings = make_settings(tmp_path / "home", chroma_host="127.0.0.1", chroma_port=port, exact_search_max_rows=0)
    outcomes: list[str] = []
    with running_server(command, ready, tmp_path / "chroma-1.log", name="chroma run", timeout_s=60):
        Index.open(settings, must_exist=False).sync([CORPUS], loaded_embedder.embedder)
        pipeline = Pipeline(settings, loaded_embedder, Index.open(settings), default_lexicon())
        assert not pipeline.ask(QUESTION_VI).refused
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                try:
                    pipeline.ask(QUESTION_VI)
                    outcomes.append("answer")
                except RagError as exc:
                    outcomes.append("sentence:" + exc.message("vi") + " | " + exc.message("en"))
                except Exception as exc:  # anything else is a failure of the test
                    outcomes.append(f"crash:{type(exc).__name__}: {exc}")

        asker = threading.Thread(target=keep_asking)
        asker.start()
        time.sleep(1.0)
    # The server has been terminated while the asker runs.
    time.sleep(2.0)
    stop.set()
    asker.join(timeout=60)
    crashes = [o for o in outcomes if o.startswith("crash:")]
    assert crashes == [], crashes[:3]
    sentences = [o for o in outcomes if o.startswith("sentence:")]
    assert sentences, outcomes[-5:]
    assert all("Chroma" in s and "\n" not in s for s in sentences)
    with pytest.raises(RagError) as info:
        pipeline.ask(QUESTION_VI)
    assert "Chroma" in info.value.en and "Chroma" in info.value.vi
    with running_server(command, ready, tmp_path / "chroma-2.log", name="chroma run", timeout_s=60):
        answer = pipeline.ask(QUESTION_VI)  # the same Pipeline object: no restart of the app
        assert not answer.refused and answer.citations
