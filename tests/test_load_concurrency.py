"""Bounded load test (issue 13 §5): 20 concurrent chat clients through the HTTP API and 20 through the Gradio
API, on one real uvicorn server (rag.server.create_app) over its own seed index with the extractive backend,
for a fixed short time, while one upload is ingested. Zero errors allowed; p50/p95 are printed, not asserted
(timings depend on the machine — README/docs/api.md keep the measured figures)."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydantic import SecretStr

from tests.servers import uvicorn_in_thread

CLIENTS = 20
DURATION_S = 5.0
INGEST_AT_S = 1.5
QUESTIONS = [
    "EMB-AI là gì và được ra mắt khi nào?",
    "Có bao nhiêu kỹ sư CNTT Việt Nam đang làm việc tại Nhật Bản?",
    "What did the Vietnamese delegation do at the STS forum in Kyoto?",
    "doanh nghiep o Osaka co the lien he co quan nao de hop tac KH&CN?",
]
NEW_DOC = (
    "---\ntitle: Chương trình trao đổi KAIZEN-LOAD\nsource: Báo Thử Tải\ndate: 2026-12-01\n---\n"
    "Chương trình trao đổi KAIZEN-LOAD đưa 40 kỹ sư Việt Nam sang Nagoya học về sản xuất tinh gọn "
    "trong sáu tháng, bắt đầu từ tháng 12 năm 2026.\n"
)

pytestmark = pytest.mark.slow


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def test_forty_concurrent_clients_and_an_ingest_without_errors(writable_service, capsys):
    from gradio_client import Client

    from rag.server import create_app

    keys = [f"load-key-{i:02d}" for i in range(CLIENTS)]
    svc = writable_service
    # One key per HTTP client, so the per-key rate limit (default 60/min) is exercised but not hit.
    svc.settings = svc.settings.model_copy(update={"api_keys": SecretStr(",".join(keys))})
    assert svc.settings.llm_base_url == "" and svc.settings.api_rate_limit > 0

    t_setup = time.perf_counter()
    with uvicorn_in_thread(create_app(svc)) as url:
        with ThreadPoolExecutor(CLIENTS) as pool:
            gradio_clients = list(pool.map(lambda _i: Client(url, verbose=False), range(CLIENTS)))
        # One request each way with nobody else asking: the unloaded latency the figures below compare with.
        alone = {}
        for name, ask in (
            ("http", lambda: httpx.post(f"{url}/v1/chat/completions", timeout=60, headers={
                "Authorization": f"Bearer {keys[0]}"}, json={"messages": [{"role": "user", "content": QUESTIONS[0]}]})),
            ("gradio", lambda: gradio_clients[0].predict(QUESTIONS[0], api_name="/ask")),
        ):
            t = time.perf_counter()
            ask()
            alone[name] = time.perf_counter() - t
        t_setup = time.perf_counter() - t_setup
        results: dict[str, list[float]] = {"http": [], "gradio": []}
        errors: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(2 * CLIENTS + 1)
        deadline = [0.0]

        def http_client(i: int) -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys[i]}"}, timeout=60) as c:
                start.wait()
                n = i
                while time.monotonic() < deadline[0]:
                    q = QUESTIONS[n % len(QUESTIONS)]
                    n += 1
                    t = time.perf_counter()
                    try:
                        r = c.post("/v1/chat/completions",
                                   json={"model": "vj-rag", "messages": [{"role": "user", "content": q}]})
                        ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                        problem = "" if ok else f"http {r.status_code}: {r.text[:200]}"
                    except Exception as exc:
                        problem = f"http {type(exc).__name__}: {exc}"
                    with lock:
                        (errors.append(problem) if problem else results["http"].append(time.perf_counter() - t))

        def gradio_client(i: int) -> None:
            client = gradio_clients[i]
            start.wait()
            n = i
            while time.monotonic() < deadline[0]:
                q = QUESTIONS[n % len(QUESTIONS)]
                n += 1
                t = time.perf_counter()
                try:
                    out = client.predict(q, api_name="/ask")
                    problem = "" if isinstance(out, dict) and out.get("answer") else f"gradio: {str(out)[:200]}"
                except Exception as exc:
                    problem = f"gradio {type(exc).__name__}: {exc}"
                with lock:
                    (errors.append(problem) if problem else results["gradio"].append(time.perf_counter() - t))

        ingest: dict[str, object] = {}

        def ingest_during_load() -> None:
            time.sleep(INGEST_AT_S)
            t = time.perf_counter()
            try:
                ingest["report"] = svc.add_files([("kaizen-load.md", NEW_DOC.encode("utf-8"))])
            except Exception as exc:
                ingest["error"] = exc
            ingest["seconds"] = time.perf_counter() - t

        threads = [threading.Thread(target=http_client, args=(i,)) for i in range(CLIENTS)]
        threads += [threading.Thread(target=gradio_client, args=(i,)) for i in range(CLIENTS)]
        for th in threads:
            th.start()
        deadline[0] = time.monotonic() + DURATION_S
        writer = threading.Thread(target=ingest_during_load)
        writer.start()
        start.wait()
        t_join = time.perf_counter()
        for th in [*threads, writer]:
            th.join(timeout=DURATION_S + 90)
        assert not any(th.is_alive() for th in [*threads, writer]), "a client hung"
        t_join = time.perf_counter() - t_join
        with ThreadPoolExecutor(CLIENTS) as pool:  # each close waits about a second for its threads
            list(pool.map(lambda c: c.close(), gradio_clients))

        # The document ingested under load is answered right away.
        r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {keys[0]}"}, timeout=60,
                       json={"messages": [{"role": "user", "content": "KAIZEN-LOAD đưa bao nhiêu kỹ sư sang Nagoya?"}]})

    assert "error" not in ingest, ingest.get("error")
    report = ingest["report"]
    assert len(report.added) == 1
    assert errors == [], f"{len(errors)} failed requests, e.g. {errors[:3]}"
    assert len(results["http"]) >= CLIENTS and len(results["gradio"]) >= CLIENTS  # every client got answers
    assert r.status_code == 200 and report.added[0] in {c["doc_id"] for c in r.json()["citations"]}

    with capsys.disabled():
        print()
        for name, lat in results.items():
            print(f"load[{name}]: {len(lat)} answers in {DURATION_S:.0f} s by {CLIENTS} clients, "
                  f"p50 {statistics.median(lat) * 1000:.0f} ms, p95 {percentile(lat, 95) * 1000:.0f} ms "
                  f"(alone: {alone[name] * 1000:.0f} ms)")
        total = sum(len(lat) for lat in results.values())
        print(f"load[all]: {total} answers, {total / t_join:.1f} answers/s until the queue drained")
        print(f"load[ingest]: 1 document added in {ingest['seconds']:.1f} s under load; "
              f"server + {CLIENTS} Gradio clients set up in {t_setup:.1f} s, queue drained {t_join:.1f} s after start")
