"""The web process: one FastAPI app serving the HTTP API (`rag.api`) and the Gradio UI (`rag.ui`) over one
Service, so both see the same index, the same live reloads and the same writer.

    serve(load_settings())          # what `python app.py` and `rag serve` do

This is the composition root for the web: it is the only module that imports both interfaces. The page
is served within seconds; models load in the background ("warming up" until ready).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from rag.config import Settings
from rag.service import Service

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gradio_options(settings: Settings) -> dict[str, Any]:
    """Defensive Gradio settings for `mount_gradio_app` — the same as `rag.ui.launch_options` (no SSR,
    no analytics, uploads capped, RAG_HOME and the corpus blocked from Gradio's file routes) minus what
    only `launch` takes (host, port, share)."""
    from rag.ui import launch_options

    options = launch_options(settings)
    for key in ("server_name", "server_port", "share"):
        options.pop(key, None)
    return options


def create_app(service: Service) -> Any:
    """FastAPI app: /v1/* and /health from rag.api, the Gradio UI at /."""
    import gradio as gr

    from rag.api import create_api
    from rag.ui import build_ui, page_options

    api = create_api(service)
    demo = build_ui(service)
    demo.queue(default_concurrency_limit=service.settings.concurrency, max_size=service.settings.max_queue)
    return gr.mount_gradio_app(api, demo, path="/", **gradio_options(service.settings), **page_options())


def app_settings(settings: Settings) -> Settings:
    """The settings as the app uses them: bulk bfloat16 embedding `auto` means off here. The app keeps
    torch (~1 GB resident) out of its memory for the sake of an occasional upload; bulk bfloat16 is for
    `rag ingest`. RAG_EMBEDDING_BULK_BF16=on turns it on in the app too."""
    if settings.embedding_bulk_bf16 == "auto":
        return settings.model_copy(update={"embedding_bulk_bf16": "off"})
    return settings


def serve(settings: Settings, **_: Any) -> None:
    """Start the service in the background, then serve API + UI on settings.host:settings.port."""
    import uvicorn

    if not is_loopback(settings.host):
        if not settings.admin_token.get_secret_value():
            log.warning("Listening on %s (not loopback) without RAG_ADMIN_TOKEN: document management is disabled, "
                        "but anyone who can reach this port can ask questions.", settings.host)
        if not settings.api_key_list():
            log.warning("Listening on %s without RAG_API_KEYS: the HTTP API is open to anyone who can reach it.",
                        settings.host)
    else:
        log.info("Listening on %s only (this machine); set RAG_HOST=0.0.0.0 to serve others.", settings.host)
    settings = app_settings(settings)
    service = Service(settings)
    service.start(sync_corpus=True, background=True, watch=True)
    app = create_app(service)
    log.info("Open http://%s:%s/ (API: /v1, docs: /docs)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
