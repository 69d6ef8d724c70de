"""The service layer: one writer per index, live readers, document management, access checks.

Real parts throughout: real Chroma under a temporary RAG_HOME, the bundled model, and real second
processes (`python -m rag.cli ingest`) for the cross-process cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag.config import BUNDLED_MODEL
from rag.errors import AccessDenied, BadInput, IndexBusy
from rag.guard import Limits, check_upload
from rag.lock import is_locked, writer_lock
from rag.service import Service
from tests.conftest import make_settings

NEW_DOC = """---
id: hop-tac-ca-phe-kon-tum-2026
title: "Kon Tum ký thỏa thuận xuất khẩu cà phê Arabica sang Nagano"
source: Báo Kon Tum
date: "2026-03-02"
---
Ngày 2/3/2026, tỉnh Kon Tum và tỉnh Nagano (Nhật Bản) ký thỏa thuận hợp tác xuất khẩu cà phê Arabica
Măng Đen. Theo thỏa thuận, công ty Zuiryu sẽ nhập khẩu 1.250 tấn cà phê mỗi năm trong giai đoạn 2026-2030.
Hai bên cũng thống nhất đào tạo 40 kỹ sư nông nghiệp tại Nagano.
"""
QUESTION = "Công ty Zuiryu nhập khẩu bao nhiêu tấn cà phê Măng Đen mỗi năm?"
QUESTION_NODIAC = "cong ty Zuiryu nhap khau bao nhieu tan ca phe Mang Den moi nam?"


def _env(home: Path, corpus: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_HOME=str(home), RAG_EMBEDDING_MODEL=BUNDLED_MODEL, RAG_CORPUS_DIR=str(corpus),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8")
    return env


def _cli(*args: str, home: Path, corpus: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rag.cli", *args], cwd=cwd, env=_env(home, corpus),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")


def _manifest_docs(home: Path) -> set[str]:
    return set(json.loads((home / "manifest.json").read_text(encoding="utf-8"))["docs"])


def _many_docs(folder: Path, n: int, stem: str) -> set[str]:
    folder.mkdir(parents=True)
    seed = (Path(__file__).resolve().parent.parent / "corpus" / "hop-tac-khcn-phap-unesco-wipo-2022.md")
    body = seed.read_text(encoding="utf-8").split("---\n", 2)[2]
    ids = set()
    for i in range(n):
        doc_id = f"{stem}-{i:03d}"
        (folder / f"{doc_id}.md").write_text(f"---\nid: {doc_id}\ntitle: {stem} {i}\n---\nBài {stem} {i}. {body}",
                                             encoding="utf-8")
        ids.add(doc_id)
    return ids


def test_writer_lock_is_exclusive_and_released_when_the_holder_dies(tmp_path):
    home = tmp_path / "home"
    with writer_lock(home):
        assert is_locked(home)
        t = time.monotonic()
        with pytest.raises(IndexBusy) as err, writer_lock(home, wait_seconds=0.3):
            pass
        assert time.monotonic() - t < 5  # waits about the configured time, never hangs
        assert "try again" in err.value.message("en") and "thử lại" in err.value.message("vi")
    assert not is_locked(home)
    # A holder killed with SIGKILL leaves no stale lock: the kernel drops flock locks with the process.
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys,time; from pathlib import Path; from rag.lock import writer_lock\n"
                               f"with writer_lock(Path({str(home)!r})):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert is_locked(home)
    holder.kill()
    holder.wait()
    with writer_lock(home, wait_seconds=2):
        pass


@pytest.mark.slow
def test_two_ingests_at_once_never_lose_documents(tmp_path):
    """The second `rag ingest` fails with one sentence while the first runs; nothing is lost or mixed."""
    home = tmp_path / "home"
    first_ids = _many_docs(tmp_path / "first", 12, "first")
    second_ids = _many_docs(tmp_path / "second", 3, "second")
    first = _cli("ingest", str(tmp_path / "first"), home=home, corpus=tmp_path / "first", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not is_locked(home):  # the first run holds the writer lock for its whole ingest
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = _cli("ingest", str(tmp_path / "second"), home=home, corpus=tmp_path / "second", cwd=tmp_path)
    out2, err2 = second.communicate(timeout=120)
    _, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 1, (out2, err2)
    assert "Another process is updating this index" in err2 and "Traceback" not in err2
    assert _manifest_docs(home) == first_ids
    # Run again once the first finished: both sets are there, nothing duplicated.
    again = _cli("ingest", str(tmp_path / "second"), home=home, corpus=tmp_path / "second", cwd=tmp_path)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert _manifest_docs(home) == first_ids | second_ids
    chunks = [json.loads(line)["chunk_id"] for line in (home / "chunks.jsonl").read_text("utf-8").splitlines()]
    assert len(chunks) == len(set(chunks))
    check = _cli("check", home=home, corpus=tmp_path / "second", cwd=tmp_path)
    out, err = check.communicate(timeout=120)
    assert check.returncode == 0 and "consistent" in out, (out, err)
    # A damaged store is reported with how to repair it, and the repair works.
    lines = (home / "chunks.jsonl").read_text("utf-8").splitlines()
    (home / "chunks.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    check = _cli("check", home=home, corpus=tmp_path / "second", cwd=tmp_path)
    out, err = check.communicate(timeout=120)
    assert check.returncode == 1 and "rag ingest" in err and "Traceback" not in err, (out, err)


def test_in_process_ingest_while_another_writer_holds_the_lock(writable_service, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "kon-tum.md").write_text(NEW_DOC, encoding="utf-8")
    before = len(writable_service.pipeline.index.chunks)
    with writer_lock(writable_service.settings.home), pytest.raises(IndexBusy):
        writable_service.ingest([extra])
    assert len(writable_service.pipeline.index.chunks) == before  # refused, untouched


@pytest.mark.slow
def test_running_service_sees_documents_another_process_ingests(writable_service, tmp_path):
    """A CLI ingest in another process reaches a running service without restart: dense, both BM25
    fields and entities."""
    svc = writable_service
    svc.start(watch=True)
    assert svc.ask(QUESTION).refused
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "kon-tum.md").write_text(NEW_DOC, encoding="utf-8")
    proc = _cli("ingest", str(extra), home=svc.settings.home, corpus=svc.settings.corpus_dir, cwd=tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    deadline = time.monotonic() + 10
    while "hop-tac-ca-phe-kon-tum-2026" not in {c.doc_id for c in svc.pipeline.index.chunks.values()}:
        assert time.monotonic() < deadline, "the running service did not pick up the new document"
        time.sleep(0.2)
    hits = svc.retrieve(QUESTION).hits
    assert hits[0].chunk.doc_id == "hop-tac-ca-phe-kon-tum-2026"
    assert {"dense", "bm25"} <= set(hits[0].ranks)
    nodiac = svc.retrieve(QUESTION_NODIAC).hits
    assert nodiac[0].chunk.doc_id == "hop-tac-ca-phe-kon-tum-2026" and "bm25_plain" in nodiac[0].ranks
    entity_hits = svc.retrieve("Kon Tum hợp tác với Nagano").hits
    assert "entities" in entity_hits[0].ranks and entity_hits[0].chunk.doc_id == "hop-tac-ca-phe-kon-tum-2026"
    answer = svc.ask(QUESTION)
    assert not answer.refused and "1.250" in answer.text


def test_upload_reingest_and_delete_through_the_service(writable_service, tmp_path):
    svc = writable_service
    report = svc.add_files([("kon-tum.md", NEW_DOC.encode("utf-8"))])
    assert report.added == ["hop-tac-ca-phe-kon-tum-2026"]
    assert not svc.ask(QUESTION).refused  # answered right after the ingest finishes, same process
    docs = {d.doc_id: d for d in svc.documents()}
    info = docs["hop-tac-ca-phe-kon-tum-2026"]
    assert info.chunks >= 1 and info.date == "2026-03-02" and info.source == "Báo Kon Tum" and info.added_at
    assert (svc.settings.uploads_path / "kon-tum.md").exists()

    again = svc.reingest("hop-tac-ca-phe-kon-tum-2026")
    assert again.updated == ["hop-tac-ca-phe-kon-tum-2026"] and again.chunks_embedded >= 1

    gone = svc.delete_document("hop-tac-ca-phe-kon-tum-2026")
    assert gone.removed == ["hop-tac-ca-phe-kon-tum-2026"]
    assert "hop-tac-ca-phe-kon-tum-2026" not in {d.doc_id for d in svc.documents()}
    assert svc.ask(QUESTION).refused
    assert not (svc.settings.uploads_path / "kon-tum.md").exists()
    assert list((svc.settings.home / "trash").glob("*kon-tum.md"))  # kept, not destroyed
    # The seed documents are untouched by all of this.
    assert len(svc.documents()) == 5
    with pytest.raises(BadInput):
        svc.delete_document("no-such-document")


@pytest.mark.parametrize("name", ["../evil.md", "/etc/passwd.md", "a\x00b.md", "line\nbreak.md",
                                  "notes.exe", "", "dir/x.md", "..\\x.md"])
def test_unsafe_upload_names_are_refused_with_a_sentence(name, writable_service):
    with pytest.raises(BadInput) as err:
        check_upload(name, b"text", 4, Limits())
    with pytest.raises(BadInput):
        writable_service.add_files([(name, b"Some text about Kon Tum.")])
    assert len(writable_service.documents()) == 5
    assert err.value.message("vi") and err.value.message("en")


def test_upload_refuses_oversized_and_empty_files_and_changes_nothing(writable_service):
    svc = writable_service.settings.model_copy(update={"max_file_mb": 0.001})
    small = Service(svc, pipeline_factory=lambda s: writable_service.pipeline)
    with pytest.raises(BadInput, match="limit"):
        small.add_files([("big.txt", b"x" * 5000)])
    with pytest.raises(BadInput, match="empty"):
        writable_service.add_files([("empty.txt", b"   \n")])
    assert len(writable_service.documents()) == 5


def test_admin_and_api_key_checks(tmp_path):
    closed = Service(make_settings(tmp_path / "a"))
    assert not closed.admin_enabled
    with pytest.raises(AccessDenied, match="RAG_ADMIN_TOKEN"):
        closed.authorize_admin("anything")
    closed.authorize_api_key(None)  # no keys configured: the API is open
    guarded = Service(make_settings(tmp_path / "b", admin_token="s3cret-token", api_keys="k1, k2"))
    guarded.authorize_admin("s3cret-token")
    for wrong in ("", None, "s3cret", "s3cret-token "):
        with pytest.raises(AccessDenied):
            guarded.authorize_admin(wrong)
    guarded.authorize_api_key("k2")
    with pytest.raises(AccessDenied):
        guarded.authorize_api_key("k3")


def test_bad_question_fails_before_any_model_loads(tmp_path):
    svc = Service(make_settings(tmp_path / "never-built"))
    for q in ("", "   ", "?!…", "x" * 30_000):
        with pytest.raises(BadInput):
            svc.ask(q)
    assert not svc.ready and svc._loaded_embedder is None


def test_status_reports_warming_up_then_ok(pipeline):
    gate = threading.Event()

    def slow_factory(_settings):
        gate.wait(10)
        return pipeline

    svc = Service(pipeline.settings, pipeline_factory=slow_factory)
    svc.start(background=True)
    assert svc.status().status == "warming_up"
    gate.set()
    assert svc.wait_ready(30)
    st = svc.status()
    assert st.status == "ok" and st.documents == 5 and st.chunks == len(pipeline.index.chunks)
    assert st.embedding_model == pipeline.embedder.name and st.backend == "extractive"


def _docx(paragraphs: list[str], title: str = "") -> bytes:
    """A minimal but valid Word file, as Word writes it: a ZIP of XML parts."""
    import io
    import zipfile
    from xml.sax.saxutils import escape

    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{escape(p)}</w:t></w:r></w:p>" for p in paragraphs)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"/>')
        z.writestr("word/document.xml", f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{w}">'
                   f"<w:body>{body}</w:body></w:document>")
        z.writestr("docProps/core.xml", '<?xml version="1.0"?><cp:coreProperties xmlns:cp="http://schemas.'
                   'openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/'
                   f'elements/1.1/"><dc:title>{escape(title)}</dc:title></cp:coreProperties>')
    return buf.getvalue()


def test_word_documents_are_read_and_answered(writable_service, tmp_path):
    from rag.load import load_file

    data = _docx(["Kon Tum ký thỏa thuận xuất khẩu cà phê Arabica Măng Đen sang Nagano.",
                  "Theo thỏa thuận, công ty Zuiryu sẽ nhập khẩu 1.250 tấn cà phê mỗi năm."],
                 title="Kon Tum và Nagano hợp tác cà phê")
    path = tmp_path / "ca-phe.docx"
    path.write_bytes(data)
    doc = load_file(path)
    assert doc.title == "Kon Tum và Nagano hợp tác cà phê" and "1.250 tấn" in doc.text
    report = writable_service.add_files([("ca-phe.docx", data)])
    assert report.added and not writable_service.ask(QUESTION).refused
    # A ZIP that is not a Word file, and a damaged one, are one sentence each; the index is unchanged.
    import io
    import zipfile

    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "not a word file")
    before = len(writable_service.documents())
    for bad in (other.getvalue(), data[: len(data) // 2]):
        report = writable_service.add_files([("bad.docx", bad)])
        assert report.skipped and "Word" in report.skipped[0].reason_en
    assert len(writable_service.documents()) == before


def test_the_app_keeps_bulk_bfloat16_off_unless_asked(tmp_path):
    from rag.embed import make_embedder
    from rag.server import app_settings

    served = app_settings(make_settings(tmp_path))
    assert served.embedding_bulk_bf16 == "off"
    assert make_embedder(BUNDLED_MODEL, served)._bulk_loader is None  # no torch for uploads in the app
    assert app_settings(make_settings(tmp_path, embedding_bulk_bf16="on")).embedding_bulk_bf16 == "on"
    assert make_settings(tmp_path).embedding_bulk_bf16 == "auto"  # the CLI keeps auto
