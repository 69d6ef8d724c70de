"""The HTTP API (FastAPI), served beside the Gradio UI from the same process (rag.server).

A thin view of `rag.service.Service`; request and response bodies are `rag.schema` models.
"""

from __future__ import annotations

from typing import Any

from rag.schema import Status
from rag.service import Service


def create_api(service: Service) -> Any:
    """The FastAPI app with every route; rag.server mounts the UI on it."""
    from fastapi import FastAPI

    api = FastAPI(title="Vietnam–Japan cooperation assistant API", version="1")

    @api.get("/health", response_model=Status, tags=["status"])
    def health() -> Status:
        """Index size, embedding model, answer backend, version; `warming_up` while models load."""
        return service.status()

    return api
