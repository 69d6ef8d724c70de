"""A fork server for the kill-at-random-points test: loads the real embedder once, then forks one
`Index.sync` per command read from stdin, so each ingest is a separate process the test can SIGKILL
without paying ~10 s of torch start-up per run.

Protocol (one JSON object per line): the test writes {"home": ..., "corpus": ...}; the server answers
{"pid": <child pid>} at once and {"status": <wait status>} when the child has ended (normally or killed).
Torch is limited to one thread before the model loads, so forking after it is safe.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from rag.embed import load_embedder
    from tests.conftest import make_settings

    embedder = load_embedder(make_settings(Path(sys.argv[1]))).embedder
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the ingest process
            code = 0
            try:
                from rag.index import Index

                settings = make_settings(Path(cmd["home"]), corpus_dir=Path(cmd["corpus"]))
                Index.open(settings, must_exist=False).sync([Path(cmd["corpus"])], embedder)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status}), flush=True)


if __name__ == "__main__":
    main()
