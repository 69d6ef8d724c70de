"""The embedder's two runtimes: ONNX Runtime must give the reference (torch) vectors, and be optional."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.config import BUNDLED_MODEL
from rag.embed import SentenceTransformerEmbedder, bundled_model_path, make_embedder
from rag.text import split_sentences
from tests.conftest import CORPUS, make_settings

ENGLISH = [
    "Japan has been Vietnam's largest provider of official development assistance for many years.",
    "The two prime ministers agreed to upgrade relations to a Comprehensive Strategic Partnership.",
    "Semiconductors, digital transformation and green energy are the new pillars of cooperation.",
]


def _corpus_texts() -> list[str]:
    """Real Vietnamese sentences from the seed articles, plus two whole articles (long: windowed)."""
    articles = [p.read_text(encoding="utf-8").split("---", 2)[-1] for p in sorted(CORPUS.glob("*.md"))]
    sentences = [a[s:e] for a in articles for s, e in split_sentences(a) if len(a[s:e].split()) >= 4]
    return sentences[:40] + articles[:2]


@pytest.fixture(scope="module")
def reference() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(BUNDLED_MODEL)


def test_default_runtime_is_onnx(embedder):
    # CI installs onnx + onnxruntime (pyproject), so the session's embedder must be the fast one;
    # a silent fallback to torch would make every speed number in the README wrong.
    assert embedder.runtime == "onnx"


def test_onnx_vectors_match_the_reference_model(embedder, reference):
    texts = _corpus_texts() + ENGLISH
    assert any(len(t.split()) > 400 for t in texts)  # long texts exercise the windows too
    docs = np.sum(embedder.embed_documents(texts) * reference.embed_documents(texts), axis=1)
    queries = np.sum(embedder.embed_queries(texts[:10]) * reference.embed_queries(texts[:10]), axis=1)
    assert docs.min() >= 0.99, docs.min()
    assert queries.min() >= 0.99, queries.min()


def test_long_texts_are_windowed_not_truncated(embedder):
    article = _corpus_texts()[-1]
    words = article.split()
    assert len(words) > 400
    head = " ".join(words[:120])  # fits one window, as a truncating embedder would keep
    whole, first = embedder.embed_documents([article, head])
    assert float(whole @ first) < 0.99  # the rest of the article moved the vector
    tail = embedder.embed_documents([" ".join(words[-120:])])[0]
    assert float(whole @ tail) > float(first @ tail)


def test_falls_back_to_torch_without_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the package were not installed
    made = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, cache_dir=tmp_path / "cache"))
    assert isinstance(made, SentenceTransformerEmbedder)
    assert made.runtime == "torch"
    assert made.embed_queries(["xin chào"]).shape == (1, made.dim)


def test_falls_back_to_torch_when_the_export_failed_its_check(tmp_path):
    from pathlib import Path

    from rag.embed_onnx import _model_key

    model_dir = Path(bundled_model_path())
    dest = tmp_path / "cache" / "onnx" / f"{model_dir.name}-{_model_key(model_dir)}"
    dest.mkdir(parents=True)
    (dest / "meta.json").write_text(json.dumps({"accepted": False, "min_cosine_to_torch": 0.91, "max_tokens": 256}))
    made = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, cache_dir=tmp_path / "cache"))
    assert made.runtime == "torch"


def test_torch_runtime_can_be_chosen(tmp_path):
    made = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, embedding_runtime="torch"))
    assert made.runtime == "torch"


def test_a_repeated_question_is_embedded_once(embedder, monkeypatch):
    # Retrieval and then the extractive answerer embed the same question; the second must be free.
    calls: list[list[str]] = []
    real = embedder._encode
    monkeypatch.setattr(embedder, "_encode", lambda texts: calls.append(list(texts)) or real(texts))
    q = "Hợp tác Việt Nam – Nhật Bản về chất bán dẫn năm 2025 gồm những gì?"
    first = embedder.embed_queries([q])
    again = embedder.embed_queries([q, "another question about JICA", q])
    assert sum(len(c) for c in calls) <= 2  # q at most once, the new text once
    assert np.allclose(first[0], again[0]) and np.allclose(again[0], again[2])
    assert float(again[0] @ again[1]) < 0.99


def _bulk_texts() -> list[str]:
    """More than BULK_MIN_TEXTS real texts: the seed sentences, alone and in neighbouring pairs."""
    from rag.embed import BULK_MIN_TEXTS

    sentences = _corpus_texts()[:-2] + ENGLISH
    texts = list(dict.fromkeys(sentences + [f"{a} {b}" for a, b in itertools.pairwise(sentences)]))
    k = 0
    while len(texts) < BULK_MIN_TEXTS + 10:  # the seed set is small: add word-shifted variants
        texts.append(" ".join(sentences[k % len(sentences)].split()[k // len(sentences) + 1 :]) or "Nhật Bản")
        k += 1
    return texts


def test_bulk_batches_use_bfloat16_within_0999_cosine_of_float32(tmp_path, reference):
    # The speed-up must not move the vectors: a large ingest batch goes through bfloat16 and each vector
    # stays within 0.999 cosine (measured: 0.99997) of the float32 reference model's.
    made = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, embedding_bulk_bf16="on"))
    assert made.bulk_runtime == "torch-bf16"
    texts = _bulk_texts()
    vectors = made.embed_documents(texts)
    assert made.__dict__["_bulk_state"]["encode"] is not None  # the bulk path ran
    cos = np.sum(vectors * reference.embed_documents(texts), axis=1)
    assert cos.min() >= 0.999, cos.min()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_questions_and_small_batches_stay_on_the_loaded_runtime(tmp_path):
    made = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, embedding_bulk_bf16="on"))
    made.embed_documents(ENGLISH)
    made.embed_queries(["JICA là gì?"])
    assert "_bulk_state" not in made.__dict__  # torch was never loaded for these


def test_bulk_bfloat16_can_be_turned_off_and_auto_follows_the_cpu(tmp_path):
    from rag.embed import bulk_bf16_enabled, cpu_has_native_bf16

    off = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, embedding_bulk_bf16="off"))
    assert off.bulk_runtime == "" and off._bulk_loader is None
    assert bulk_bf16_enabled(make_settings(tmp_path)) is cpu_has_native_bf16()
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore").splitlines()
    flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    assert cpu_has_native_bf16() is bool({"amx_bf16", "avx512_bf16"} & set(flags))


def test_a_failing_bulk_loader_falls_back_to_float32(tmp_path, caplog):
    made = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, embedding_bulk_bf16="off"))
    texts = _bulk_texts()
    expected = made.embed_documents(texts)

    def broken() -> None:
        raise ImportError("No module named 'torch'")

    made._bulk_loader = broken
    with caplog.at_level("WARNING"):
        got = made.embed_documents(texts)
    assert np.allclose(got, expected, atol=1e-5)
    assert "Bulk bfloat16 embedding unavailable" in caplog.text


def test_an_uncached_model_falls_back_without_importing_torch(tmp_path):
    # Offline with the default (hub) model not cached: the fallback must come at once, not after the
    # seconds torch and sentence-transformers take to import only to fail the same cache lookup.
    import subprocess

    code = (
        "import sys\n"
        "from rag.config import Settings\n"
        "from rag.embed import load_embedder\n"
        f"s = Settings(_env_file=None, home={str(tmp_path)!r}, embedding_model='vj-rag-tests/not-cached',\n"
        "             embedding_allow_download=False)\n"
        "loaded = load_embedder(s)\n"
        "print(loaded.is_fallback, loaded.embedder.runtime, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.split() == ["True", "onnx", "False"], out.stdout + out.stderr[-2000:]


def test_release_bulk_frees_the_torch_model_and_a_later_batch_reloads_it(tmp_path, reference, monkeypatch):
    # An ingest's embedding loop ends before its keyword-index build, the other memory peak: the bulk
    # model (a second copy of the weights, in torch) must be gone by then, not kept for the process's life.
    import gc
    import weakref

    import rag.embed as embed_module

    # A dozen texts take the bulk path here: bfloat16 is emulated (slow) on CPUs without AMX/AVX512-BF16.
    monkeypatch.setattr(embed_module, "BULK_MIN_TEXTS", 8)
    made = make_embedder(BUNDLED_MODEL, make_settings(tmp_path, embedding_bulk_bf16="on"))
    texts = _corpus_texts()[:10] + ENGLISH
    first = made.embed_documents(texts)
    model = weakref.ref(made.__dict__["_bulk_state"]["encode"].__self__._model)
    assert model() is not None
    assert made.release_bulk() is True
    gc.collect()
    assert model() is None, "the bulk torch model is still referenced after release_bulk()"
    assert made.release_bulk() is False  # nothing loaded any more
    again = made.embed_documents(texts)  # loads it again
    assert made.__dict__["_bulk_state"]["encode"] is not None
    assert np.sum(again * first, axis=1).min() >= 0.9999
    assert np.sum(again * reference.embed_documents(texts), axis=1).min() >= 0.999


def test_trim_heap_returns_memory_on_glibc():
    from rag.memory import trim_heap

    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    assert trim_heap() in (True, False)
    if libc:  # glibc: malloc_trim is called (it reports whether it released anything, so only the type)
        from rag.memory import _malloc_trim

        assert _malloc_trim() is not None
