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


def pipeline_beside_seeds(root: Path, loaded: LoadedEmbedder, documents: dict[str, str]):
    """A real Pipeline over an index of the seed corpus plus `documents` (file name -> text), built under
    `root` (`root/docs`, `root/index`): extra documents stay out of corpus/."""
    from rag.chain import Pipeline
    from rag.index import Index
    from rag.lexicon import default_lexicon

    folder = root / "docs"
    folder.mkdir(parents=True)
    for name, text in documents.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = make_settings(root / "index")
    Index.open(settings, must_exist=False).sync([CORPUS, folder], loaded.embedder)
    return Pipeline(settings, loaded, Index.open(settings), default_lexicon())


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


@pytest.fixture(scope="session")
def service(pipeline):
    """A started Service over the shared seed pipeline (read-only too: do not ingest through it)."""
    from rag.service import Service

    svc = Service(pipeline.settings, pipeline_factory=lambda _settings: pipeline)
    svc.start()
    return svc


@pytest.fixture
def writable_service(tmp_path, loaded_embedder, corpus_copy):
    """A Service over its own index of a copy of the seed corpus, sharing the loaded embedder."""
    from rag.chain import Pipeline
    from rag.index import Index
    from rag.lexicon import default_lexicon
    from rag.service import Service

    settings = make_settings(tmp_path / "home", corpus_dir=corpus_copy, reload_interval=0.2)
    Index.open(settings, must_exist=False).sync([corpus_copy], loaded_embedder.embedder)

    def factory(s):
        return Pipeline(s, loaded_embedder, Index.open(s), default_lexicon())

    svc = Service(settings, pipeline_factory=factory)
    svc._loaded_embedder = loaded_embedder
    svc.start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright, one per test module (Playwright cannot download its own here)."""
    from tests.test_ui import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
