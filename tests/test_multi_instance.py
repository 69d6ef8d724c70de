"""Several instances, one store: two app processes share a real `chroma run` server and no folder.

A document added through instance A is answered through instance B — by dense and keyword search —
within seconds, without a restart. Each instance has its own RAG_HOME (a local cache it rebuilds from
the server); they share nothing on disk.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest

from rag.config import BUNDLED_MODEL
from tests.conftest import CORPUS
from tests.servers import free_port, running_server
from tests.test_chroma_server import _chroma_cli
from tests.test_service import NEW_DOC, QUESTION, QUESTION_NODIAC

pytestmark = pytest.mark.slow
ADMIN = "multi-instance-admin-token"


def _app_env(home: Path, corpus: Path, chroma_port: int, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_HOME=str(home), RAG_CORPUS_DIR=str(corpus), RAG_EMBEDDING_MODEL=BUNDLED_MODEL,
        RAG_CHROMA_HOST="127.0.0.1", RAG_CHROMA_PORT=str(chroma_port), RAG_PORT=str(port),
        RAG_RELOAD_INTERVAL="1", RAG_ADMIN_TOKEN=ADMIN, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
    )
    return env


def _wait_ok(url: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(f"{url}/health", timeout=5).json()
        if body["status"] == "ok":
            return body
        assert body["status"] == "warming_up", body
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


def _ask(url: str, question: str) -> dict:
    from gradio_client import Client

    return Client(url + "/", verbose=False).predict(question, api_name="/ask")


def test_document_added_through_a_is_answered_through_b(tmp_path):
    data = tmp_path / "chroma-data"
    chroma_port = free_port()
    chroma = [_chroma_cli(), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(chroma_port)]
    corpus_a = tmp_path / "corpus-a"
    shutil.copytree(CORPUS, corpus_a)
    corpus_b = tmp_path / "corpus-b"  # B has no documents of its own: all it knows comes from the server
    corpus_b.mkdir()
    port_a, port_b = free_port(), free_port()
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    app = [sys.executable, str(Path(__file__).resolve().parent.parent / "app.py")]
    with running_server(chroma, f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", tmp_path / "chroma.log",
                        name="chroma run", timeout_s=60):
        env_a = _app_env(tmp_path / "home-a", corpus_a, chroma_port, port_a)
        env_b = _app_env(tmp_path / "home-b", corpus_b, chroma_port, port_b)
        with _app(app, env_a, url_a, tmp_path / "a.log"):
            assert _wait_ok(url_a)["documents"] == 5
            with _app(app, env_b, url_b, tmp_path / "b.log"):
                health_b = _wait_ok(url_b)
                assert health_b["chroma"] == "server" and health_b["documents"] == 5  # mirrored from the server
                assert _ask(url_b, QUESTION)["refused"]

                # Add a document through A (its own writer process on A's cache, as an admin upload would).
                _add_through(url_a, env_a, tmp_path)
                t0 = time.monotonic()
                deadline = t0 + 10  # the promise: within 10 s of the document being added
                while True:
                    answer = _ask(url_b, QUESTION)
                    if not answer.get("refused", True):
                        break
                    assert time.monotonic() < deadline, "instance B never saw the document added through A"
                    time.sleep(0.5)
                seen_after = time.monotonic() - t0
                top = answer["retrieved"][0]
                assert top["doc_id"] == "hop-tac-ca-phe-kon-tum-2026"
                assert {"dense", "bm25"} <= set(top["ranks"])  # found by dense and keyword search
                nodiac = _ask(url_b, QUESTION_NODIAC)
                assert nodiac["retrieved"][0]["doc_id"] == "hop-tac-ca-phe-kon-tum-2026"
                assert "bm25_plain" in nodiac["retrieved"][0]["ranks"]
                assert not (tmp_path / "home-b" / "chroma").exists()  # B never had an embedded database
                print(f"B answered from the new document {seen_after:.1f} s after A's ingest finished")


def _add_through(url_a: str, env_a: dict[str, str], tmp_path: Path) -> None:
    """Upload through A's document API when it exists, else ingest with A's settings from the CLI."""
    files = {"files": ("kon-tum.md", NEW_DOC.encode("utf-8"), "text/markdown")}
    r = httpx.post(f"{url_a}/v1/documents", files=files, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300)
    if r.status_code == 404:
        import subprocess

        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "kon-tum.md").write_text(NEW_DOC, encoding="utf-8")
        subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(extra)], env=env_a, check=True,
                       capture_output=True, timeout=300)
        return
    assert r.status_code == 200, r.text
    assert "hop-tac-ca-phe-kon-tum-2026" in r.json()["added"]


def _app(command: list[str], env: dict[str, str], url: str, log: Path):
    return running_server(command, f"{url}/health", log, name="app", timeout_s=120, env=env)
