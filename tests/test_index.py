"""Incremental ingest over real Chroma + BM25: unchanged, changed, removed, interrupted, model change."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rag.embed import SentenceTransformerEmbedder, bundled_model_path
from rag.errors import BadInput, IndexModelMismatch
from rag.index import Index
from tests.conftest import CORPUS, make_settings


def _consistent(index: Index) -> None:
    """Chroma, both BM25 fields, the chunk store and the manifest describe the same chunks."""
    store = set(index.chunks)
    assert set(index.collection().get(include=[])["ids"]) == store
    assert set(index.accented.ids) == store == set(index.plain.ids)
    manifest_ids = {cid for info in index.manifest["docs"].values() for cid in info["chunk_ids"]}
    assert manifest_ids == store
    assert {c.doc_id for c in index.chunks.values()} == set(index.manifest["docs"])


def test_unchanged_corpus_embeds_nothing(tmp_path, corpus_copy, embedder):
    index = Index.open(make_settings(tmp_path / "home"), must_exist=False)
    first = index.sync([corpus_copy], embedder)
    assert len(first.added) == 5 and first.chunks_embedded == first.total_chunks > 0
    second = Index.open(make_settings(tmp_path / "home")).sync([corpus_copy], embedder)
    assert second.chunks_embedded == 0 and len(second.unchanged) == 5
    assert not second.added and not second.updated and not second.removed


def test_changed_file_replaces_and_removed_file_disappears(tmp_path, corpus_copy, embedder):
    settings = make_settings(tmp_path / "home")
    index = Index.open(settings, must_exist=False)
    index.sync([corpus_copy], embedder)
    sts = corpus_copy / "dien-dan-sts-kyoto-2023.md"
    sts.write_text(sts.read_text(encoding="utf-8").replace("hơn 1.500 đại biểu", "hơn 2.700 đại biểu"), encoding="utf-8")
    (corpus_copy / "bo-truong-dung-lam-viec-vjoin-2023.md").unlink()
    report = index.sync([corpus_copy], embedder)
    assert report.updated == ["dien-dan-sts-kyoto-2023"]
    assert report.removed == ["bo-truong-dung-lam-viec-vjoin-2023"]
    reopened = Index.open(settings)
    _consistent(reopened)
    texts = " ".join(c.text for c in reopened.chunks.values())
    assert "2.700 đại biểu" in texts and "1.500 đại biểu" not in texts
    assert not any(c.doc_id == "bo-truong-dung-lam-viec-vjoin-2023" for c in reopened.chunks.values())
    assert reopened.accented.search(["vjoin"], 5) == []  # gone from BM25 too
    assert reopened.collection().get(where={"doc_id": "bo-truong-dung-lam-viec-vjoin-2023"})["ids"] == []


def test_extra_folder_does_not_remove_main_corpus(tmp_path, corpus_copy, embedder):
    index = Index.open(make_settings(tmp_path / "home"), must_exist=False)
    index.sync([corpus_copy], embedder)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.txt").write_text("Ghi chú về JETRO tại Osaka.\nJETRO hỗ trợ doanh nghiệp nhỏ và vừa.", encoding="utf-8")
    report = index.sync([extra], embedder)
    assert report.added == ["note"] and report.removed == []
    assert len(index.manifest["docs"]) == 6


def test_empty_folder_is_refused_and_index_untouched(tmp_path, corpus_copy, embedder):
    settings = make_settings(tmp_path / "home")
    Index.open(settings, must_exist=False).sync([corpus_copy], embedder)
    before = settings.manifest_path.read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match=r"No \.txt, \.md"):
        Index.open(settings).sync([empty], embedder)
    assert settings.manifest_path.read_bytes() == before


def test_other_model_is_refused_then_reembedded(tmp_path, corpus_copy, embedder):
    settings = make_settings(tmp_path / "home")
    Index.open(settings, must_exist=False).sync([corpus_copy], embedder)
    # The same weights under another name: a real, different embedder as far as the index knows.
    other = SentenceTransformerEmbedder(bundled_model_path())
    index = Index.open(settings)
    with pytest.raises(IndexModelMismatch) as info:
        index.check_model(other)
    assert "rag ingest" in info.value.en and "rag ingest" in info.value.vi
    report = index.sync([corpus_copy], other)
    assert report.reembedded_for_model and report.chunks_embedded == report.total_chunks
    assert Index.open(settings).embedding_model == other.name
    _consistent(Index.open(settings))


def test_ingest_killed_midway_then_rerun_is_consistent(tmp_path, embedder):
    corpus = tmp_path / "many"
    corpus.mkdir()
    seed = (CORPUS / "hop-tac-khcn-phap-unesco-wipo-2022.md").read_text(encoding="utf-8").split("---\n", 2)[2]
    for i in range(60):
        (corpus / f"doc-{i:03d}.txt").write_text(f"Bài số {i}\nPhiên bản {i}: " + seed, encoding="utf-8")
    home = tmp_path / "home"
    env = {**os.environ, "RAG_HOME": str(home), "RAG_EMBEDDING_MODEL": "bundled:all-MiniLM-L6-v2", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "ingest", str(corpus)], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    # Kill it once Chroma has received some, but not all, of the vectors.
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (home / "chroma" / "chroma.sqlite3").exists() and (home / "chroma" / "chroma.sqlite3").stat().st_size > 400_000:
            break
        time.sleep(0.2)
    was_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert was_running, "ingest finished before it could be interrupted; make the corpus larger"
    assert not (home / "manifest.json").exists()  # the manifest is written last
    settings = make_settings(home)
    report = Index.open(settings, must_exist=False).sync([corpus], embedder)
    assert len(report.added) == 60
    _consistent(Index.open(settings))
    assert json.loads(settings.manifest_path.read_text(encoding="utf-8"))["embedding_model"] == embedder.name


# ------------------------------------------------------------------ sentence store and chunk vectors


def _quotable(text: str) -> list[str]:
    """The sentences ExtractiveAnswerer.candidates scores (split_sentences, at least four words)."""
    from rag.text import split_sentences

    return [text[s:e] for s, e in split_sentences(text) if len(text[s:e].split()) >= 4]


def test_sentence_vectors_are_stored_at_ingest_and_match_the_embedder(seed_home, embedder):
    import numpy as np

    index = Index.open(make_settings(seed_home))
    assert (seed_home / "sentences.npy").exists()
    for cid, chunk in index.chunks.items():
        sentences = _quotable(chunk.text)
        stored = index.sentence_vectors(cid, sentences)
        assert stored is not None and stored.shape == (len(sentences), embedder.dim)
        fresh = embedder.embed_documents(sentences)
        assert np.sum(stored * fresh, axis=1).min() >= 0.99  # float16 storage, same model
    chunk = next(iter(index.chunks.values()))
    assert index.sentence_vectors(chunk.chunk_id, _quotable(chunk.text)[1:]) is None  # cut differently
    assert index.sentence_vectors("no-such-chunk", ["a b c d"]) is None


def test_chunk_vector_is_the_word_weighted_mean_of_title_and_sentences(seed_home, embedder):
    import numpy as np

    from rag.text import split_sentences

    index = Index.open(make_settings(seed_home))
    for row in (0, len(index.accented.ids) - 1):
        chunk = index.chunks[index.accented.ids[row]]
        units = [chunk.title] + [chunk.text[s:e] for s, e in split_sentences(chunk.text)]
        weights = np.array([len(u.split()) for u in units], dtype=np.float32)
        expected = weights @ embedder.embed_documents(units)
        expected /= np.linalg.norm(expected)
        assert float(index.vectors[row] @ expected) >= 0.999


def test_incremental_ingest_keeps_every_chunks_sentence_vectors(tmp_path, corpus_copy, embedder):
    settings = make_settings(tmp_path / "home")
    Index.open(settings, must_exist=False).sync([corpus_copy], embedder)
    sts = corpus_copy / "dien-dan-sts-kyoto-2023.md"
    sts.write_text(sts.read_text(encoding="utf-8").replace("hơn 1.500 đại biểu", "hơn 2.700 đại biểu"), encoding="utf-8")
    Index.open(settings).sync([corpus_copy], embedder)
    reopened = Index.open(settings)
    for cid, chunk in reopened.chunks.items():
        assert reopened.sentence_vectors(cid, _quotable(chunk.text)) is not None, cid


class _NoDocumentEmbedding:
    """The real embedder for questions; embedding passages at question time is an error."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def embed_queries(self, texts):
        return self.inner.embed_queries(texts)

    def embed_documents(self, texts):
        raise AssertionError("sentences were embedded at question time")


def test_extractive_answer_embeds_no_sentences_at_question_time(pipeline, embedder):
    from rag.answer import ExtractiveAnswerer

    result = pipeline.retriever.retrieve("Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?")
    answerer = ExtractiveAnswerer(pipeline.index, _NoDocumentEmbedding(embedder), pipeline.lexicon)
    answer = answerer.answer(result.plan, result.hits)
    assert not answer.refused and "5.000" in answer.text


def test_answer_reads_stored_vectors_when_it_skips_headings_and_questions(tmp_path, embedder):
    """The answerer leaves out headings and question sentences the store holds: it takes the rows of the
    sentences it keeps instead of embedding them at question time."""
    from rag.answer import ExtractiveAnswerer
    from rag.lexicon import default_lexicon
    from rag.retrieve import HybridRetriever

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ban-dan.md").write_text(
        "---\ntitle: Hợp tác bán dẫn\nsource: test\ndate: 2025-01-01\n---\n"
        "=== Đào tạo kỹ sư bán dẫn cùng Nhật Bản ===\n\n"
        "Việt Nam sẽ đào tạo bao nhiêu kỹ sư bán dẫn cùng các đối tác Nhật Bản?\n\n"
        "Hai bên thống nhất đào tạo 1.000 kỹ sư bán dẫn tại Hà Nội trong năm năm tới. "
        "Chương trình do các trường đại học của hai nước cùng thực hiện.\n", encoding="utf-8")
    settings = make_settings(tmp_path / "home")
    index = Index.open(settings, must_exist=False)
    index.sync([docs], embedder)
    chunk = next(iter(index.chunks.values()))
    assert any("==" in s or s.rstrip().endswith("?") for s in _quotable(chunk.text))  # skipped by the answerer
    guarded = _NoDocumentEmbedding(embedder)
    lexicon = default_lexicon()
    result = HybridRetriever(index, guarded, settings, lexicon).retrieve("Đào tạo bao nhiêu kỹ sư bán dẫn?")
    answer = ExtractiveAnswerer(index, guarded, lexicon).answer(result.plan, result.hits)
    assert not answer.refused and "1.000" in answer.text


def test_streamed_ingest_dedupes_copies_across_batches_and_leaves_no_temporary_files(
    tmp_path, corpus_copy, embedder, monkeypatch
):
    """Batches of one chunk: the copy arrives many batches after its original and is still caught."""
    import rag.index as index_module

    copy = corpus_copy / "zz-ban-sao.md"
    copy.write_text((corpus_copy / "dien-dan-sts-kyoto-2023.md").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(index_module, "_INGEST_BATCH", 1)
    settings = make_settings(tmp_path / "home")
    report = Index.open(settings, must_exist=False).sync([corpus_copy], embedder)
    assert [os.path.basename(s.path) for s in report.skipped] == ["zz-ban-sao.md"]
    assert "same content as dien-dan-sts-kyoto-2023.md" in report.skipped[0].reason_en
    reopened = Index.open(settings)
    _consistent(reopened)
    assert len(reopened.manifest["docs"]) == 5 and report.chunks_embedded == len(reopened.chunks)
    for cid, chunk in reopened.chunks.items():
        assert reopened.sentence_vectors(cid, _quotable(chunk.text)) is not None, cid
    assert not [p.name for p in settings.home.iterdir() if p.name.startswith(".")]
    # The same corpus in one batch gives the same index.
    monkeypatch.setattr(index_module, "_INGEST_BATCH", 10_000)
    one_batch = Index.open(make_settings(tmp_path / "home2"), must_exist=False)
    one_batch.sync([corpus_copy], embedder)
    assert list(one_batch.chunks) == list(reopened.chunks)
    assert np.allclose(one_batch.vectors, reopened.vectors, atol=1e-5)


def test_sync_releases_the_bulk_model_after_the_last_embedding(tmp_path, corpus_copy, embedder):
    """The bulk (bfloat16 torch) model must not sit beside the keyword-index build that follows embedding."""
    calls: list[str] = []

    class Recording:
        name, dim = embedder.name, embedder.dim

        def embed_documents(self, texts):
            calls.append("embed")
            return embedder.embed_documents(texts)

        def embed_queries(self, texts):
            return embedder.embed_queries(texts)

        def release_bulk(self):
            calls.append("release")
            return False

    import rag.index as index_module

    built: list[int] = []
    original = index_module.BM25Field.build.__func__

    def build(cls, ids, tokens):
        built.append(calls.count("release"))  # releases seen when each BM25 field is built
        return original(cls, ids, tokens)

    index_module.BM25Field.build = classmethod(build)
    try:
        Index.open(make_settings(tmp_path / "home"), must_exist=False).sync([corpus_copy], Recording())
    finally:
        index_module.BM25Field.build = classmethod(original)
    assert calls.count("release") == 1 and calls[-1] == "release" and "embed" in calls
    assert built == [1, 1]


def test_bm25_matrix_is_bm25s_own_build(seed_home):
    """The numpy build of a BM25 field gives bm25s's matrix, column for column, bit for bit."""
    import bm25s

    from rag.index import _bm25_lucene_matrix

    index = Index.open(make_settings(seed_home))
    lines = [json.loads(x) for x in (seed_home / "tokens.jsonl").read_text(encoding="utf-8").splitlines()]
    tokens = [row["tokens"].split() for row in lines] + [[]]  # an empty document too
    theirs = bm25s.BM25()
    theirs.index(tokens, show_progress=False)
    scores, vocab = _bm25_lucene_matrix(tokens, theirs.k1, theirs.b)
    assert set(vocab) == set(theirs.vocab_dict) and scores["num_docs"] == len(tokens)
    for name in ("data", "indices", "indptr"):
        assert scores[name].dtype == theirs.scores[name].dtype, name
    ours, their = scores, theirs.scores
    for token, col in vocab.items():
        if token == "":
            continue
        c = theirs.vocab_dict[token]
        a, b = slice(ours["indptr"][col], ours["indptr"][col + 1]), slice(their["indptr"][c], their["indptr"][c + 1])
        assert np.array_equal(ours["indices"][a], their["indices"][b]), token
        assert np.array_equal(ours["data"][a], their["data"][b]), token
    # And the index's own field (built this way at ingest) scores queries exactly as bm25s would.
    assert [row["chunk_id"] for row in lines] == index.accented.ids
    exact = bm25s.BM25()
    exact.index(tokens[:-1], show_progress=False)
    for query in (tokens[0][:5], tokens[len(tokens) // 2][3:9], ["nhật_bản", "việt_nam", "không-có-từ-này"]):
        assert np.array_equal(index.accented.retriever.get_scores(query), exact.get_scores(query)), query
