"""Bilingual (Vietnamese/English) retrieval-augmented Q&A over Vietnam–Japan cooperation documents."""

from rag.chain import Pipeline, Turn
from rag.config import Settings
from rag.errors import BadInput, IndexMissing, IndexModelMismatch, RagError
from rag.retrieve import Filters
from rag.types import Answer, Chunk, Citation, Document, Hit

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
