"""Real servers for tests: a free loopback port, and a subprocess server that is up before it is used."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


@contextlib.contextmanager
def running_server(
    command: list[str], ready_url: str, log_path: Path, *, name: str, timeout_s: float,
    env: dict[str, str] | None = None,
) -> Iterator[None]:
    """Start `command` (output to `log_path`), wait until `ready_url` answers 200, stop it on exit.

    Fails the test with the log's tail when the process exits early or is not ready in `timeout_s`.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{log_tail(log_path)}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready after {timeout_s:.0f} s:\n{log_tail(log_path)}")
            time.sleep(0.25)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextlib.contextmanager
def uvicorn_in_thread(app, *, timeout_s: float = 60, **config) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn server on a free loopback port in a background thread.

    Yields the base URL once `GET /health` answers 200; stops the server (and joins the thread) on exit.
    Extra keyword arguments go to `uvicorn.Config` (e.g. log_level="info" to see access logs).
    """
    import threading

    import uvicorn

    port = free_port()
    # A short graceful-shutdown timeout: clients that keep connections open (gradio_client) must not stall
    # the test's teardown.
    options = {"log_level": "warning", "timeout_graceful_shutdown": 3, **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if not thread.is_alive():
                pytest.fail("uvicorn exited before it was ready")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn not ready after {timeout_s:.0f} s")
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
