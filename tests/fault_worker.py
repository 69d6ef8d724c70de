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
            result: dict = {"ok": True}
            try:
                if cmd.get("fsize"):  # a "full disk": writes beyond this many bytes fail with EFBIG
                    import resource
                    import signal

                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                    resource.setrlimit(resource.RLIMIT_FSIZE, (cmd["fsize"], hard))  # soft only: restorable
                from rag.errors import RagError
                from rag.index import Index

                settings = make_settings(Path(cmd["home"]), corpus_dir=Path(cmd["corpus"]))
                try:
                    Index.open(settings, must_exist=False).sync([Path(cmd["corpus"])], embedder)
                except RagError as exc:
                    result = {"ok": False, "rag_error": True, "en": exc.en, "vi": exc.vi}
                    code = 2
            except BaseException as exc:
                traceback.print_exc()
                result = {"ok": False, "rag_error": False, "type": type(exc).__name__, "text": str(exc)[:500]}
                code = 1
            if cmd.get("result"):
                import resource

                hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
                Path(cmd["result"]).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
            os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status}), flush=True)


if __name__ == "__main__":
    main()
