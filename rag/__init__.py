"""Bilingual (Vietnamese/English) retrieval-augmented Q&A over Vietnam–Japan cooperation documents.

The public names are imported on first use (PEP 562 module `__getattr__`), so `import rag.config` or
`import rag.errors` stays cheap: `Pipeline` pulls in torch, Chroma and LangChain, which a `--help`, an
invalid question or an invalid path must not wait for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs only; nothing heavy is imported at run time
    from rag.chain import Pipeline, Turn
    from rag.config import Settings
    from rag.errors import BadInput, IndexMissing, IndexModelMismatch, RagError
    from rag.retrieve import Filters
    from rag.types import Answer, Chunk, Citation, Document, Hit

_WHERE = {
    "Answer": "rag.types",
    "BadInput": "rag.errors",
    "Chunk": "rag.types",
    "Citation": "rag.types",
    "Document": "rag.types",
    "Filters": "rag.retrieve",
    "Hit": "rag.types",
    "IndexMissing": "rag.errors",
    "IndexModelMismatch": "rag.errors",
    "Pipeline": "rag.chain",
    "RagError": "rag.errors",
    "Settings": "rag.config",
    "Turn": "rag.chain",
}

__all__ = [
    "Answer",
    "BadInput",
    "Chunk",
    "Citation",
    "Document",
    "Filters",
    "Hit",
    "IndexMissing",
    "IndexModelMismatch",
    "Pipeline",
    "RagError",
    "Settings",
    "Turn",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
