"""bench/ingest_bench.py keeps working (CI runs it at a tiny size; no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import CORPUS, REPO


@pytest.mark.slow
def test_ingest_bench_runs_both_pipelines_on_the_same_documents(tmp_path):
    # A tiny archive shaped like viwiki.tar.xz (viwiki/<title>.txt), made from the seed articles.
    src = tmp_path / "viwiki"
    src.mkdir()
    for p in sorted(CORPUS.glob("*.md"))[:3]:
        (src / f"{p.stem}.txt").write_text(p.read_text(encoding="utf-8").split("---", 2)[-1], encoding="utf-8")
    archive = tmp_path / "tiny.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(src, arcname="viwiki")
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ingest_bench.py"), "--sizes", "3", "--viwiki", str(archive),
         "--work", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    naive, ours = rows
    assert naive["pipeline"].startswith("naive") and ours["pipeline"].startswith("ours")
    assert naive["docs"] == ours["docs"] == 3
    assert ours["truncated_tokens"] == 0 and ours["embedded_tokens"] > 0 and naive["embedded_tokens"] > 0
    assert all(r["peak_rss_mb"] > 0 and r["docs_per_s"] > 0 for r in rows)
    assert "| 3 | ours" in run.stdout  # the side-by-side table
