"""Client-server mode: the index stores its vectors in a real `chroma run` server on loopback."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, make_settings
from tests.servers import free_port, running_server

pytestmark = pytest.mark.slow

QUESTION_VI = "Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?"


def _chroma_cli() -> str:
    local = Path(sys.executable).parent / "chroma"
    found = str(local) if local.exists() else shutil.which("chroma")
    if not found:
        pytest.fail("the `chroma` CLI (installed with chromadb) was not found next to the Python interpreter")
    return found


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory):
    """A `chroma run` server on a free port; terminated at the end of the module."""
    data = tmp_path_factory.mktemp("chroma-server-data")
    port = free_port()
    command = [_chroma_cli(), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)]
    ready = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    with running_server(command, ready, data.parent / f"{data.name}.log", name="chroma run", timeout_s=60):
        yield port


@pytest.fixture(scope="module")
def server_settings(chroma_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("server-home")
    return make_settings(home, chroma_host="127.0.0.1", chroma_port=chroma_port)


@pytest.fixture(scope="module")
def synced(server_settings, embedder):
    from rag.index import Index

    return Index.open(server_settings, must_exist=False).sync([CORPUS], embedder)


def test_sync_stores_vectors_on_the_server(synced, server_settings, chroma_port):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from rag.index import Index

    index = Index.open(server_settings)
    assert len(synced.added) == 5
    assert synced.chunks_embedded == synced.total_chunks == len(index.chunks) > 0

    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.get_collection(server_settings.collection)
    assert collection.count() == len(index.chunks)
    assert set(collection.get(include=[])["ids"]) == set(index.chunks)
    # The vectors went to the server, not to an embedded database under RAG_HOME.
    assert not server_settings.chroma_dir.exists()


def test_pipeline_answers_with_citations_over_the_server(synced, server_settings, loaded_embedder):
    from rag.chain import Pipeline
    from rag.index import Index
    from rag.lexicon import default_lexicon

    # exact_search_max_rows=0: unfiltered dense search goes to the server's HNSW index, not the local matrix.
    settings = server_settings.model_copy(update={"exact_search_max_rows": 0})
    pipeline = Pipeline(settings, loaded_embedder, Index.open(settings), default_lexicon())
    answer = pipeline.ask(QUESTION_VI)
    assert not answer.refused
    assert "5.000" in answer.text
    assert answer.citations
    assert any("5.000" in c.quote for c in answer.citations)
    assert all(c.quote in c.chunk.text for c in answer.citations)
    assert "[1]" in answer.text
    assert any("dense" in h.ranks for h in answer.hits), "no hit came from the server's dense search"


def test_second_sync_against_the_server_embeds_nothing(synced, server_settings, embedder):
    from rag.index import Index

    again = Index.open(server_settings).sync([CORPUS], embedder)
    assert again.chunks_embedded == 0
    assert len(again.unchanged) == 5
    assert again.total_chunks == synced.total_chunks
