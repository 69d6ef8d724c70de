"""Shared fixtures: the real bundled embedding model (loaded once) and a seed-corpus index built once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.config import BUNDLED_MODEL, Settings
from rag.embed import LoadedEmbedder, load_embedder

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"


def make_settings(home: Path, **overrides) -> Settings:
    """Settings for tests: the bundled model, no .env, the given index folder."""
    values = {"home": home, "embedding_model": BUNDLED_MODEL, "corpus_dir": CORPUS, **overrides}
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def loaded_embedder(tmp_path_factory) -> LoadedEmbedder:
    return load_embedder(make_settings(tmp_path_factory.mktemp("unused")))


@pytest.fixture(scope="session")
def embedder(loaded_embedder):
    return loaded_embedder.embedder


@pytest.fixture(scope="session")
def seed_home(tmp_path_factory, embedder) -> Path:
    """An index of the five seed documents, built once per session; copy it before mutating."""
    from rag.index import Index

    home = tmp_path_factory.mktemp("seed-index")
    Index.open(make_settings(home), must_exist=False).sync([CORPUS], embedder)
    return home


@pytest.fixture(scope="session")
def pipeline(seed_home, loaded_embedder):
    """A read-only Pipeline over the seed index (shared; do not ingest through it)."""
    from rag.chain import Pipeline
    from rag.index import Index
    from rag.lexicon import default_lexicon

    settings = make_settings(seed_home)
    return Pipeline(settings, loaded_embedder, Index.open(settings), default_lexicon())


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    """A writable copy of the seed corpus."""
    dest = tmp_path / "corpus"
    shutil.copytree(CORPUS, dest)
    return dest
