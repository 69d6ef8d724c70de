"""Process-level settings applied at the edge."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import numpy  # noqa: F401  (loads the BLAS library threadpoolctl inspects)
from threadpoolctl import threadpool_info
from rag.cli import make_settings
before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
make_settings(None)
after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({"before": before, "after": after}))
"""


@pytest.mark.parametrize(("setting", "expected"), [("1", 1), ("0", None)])
def test_cli_settings_limit_numpy_blas_threads(tmp_path, setting, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENBLAS", "OMP_", "MKL_"))}
    env["RAG_BLAS_THREADS"] = setting
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    threads = json.loads(proc.stdout.strip().splitlines()[-1])
    assert threads["before"], "numpy has no BLAS pool to limit"
    if expected is None:  # 0 leaves the library default untouched
        assert threads["after"] == threads["before"]
    else:
        assert threads["after"] == [expected] * len(threads["after"])
