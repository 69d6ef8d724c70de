"""The embedder on ONNX Runtime: the same sentence-transformers model, exported once, run without torch.

Why: on a 2-core CPU the embedder is ~95% of ingest time, and ONNX Runtime's fused BERT kernels
(attention, skip-layer-norm, bias-GELU from its transformer optimizer) run MiniLM faster than torch,
most of all on the short texts the index embeds (sentences). Loading it also skips importing torch
and sentence-transformers, which is most of a cold start.

Shortcut taken: only models whose sentence-transformers pipeline is Transformer -> mean Pooling
[-> Normalize] are exported (all-MiniLM-L6-v2 and the e5 family are); anything else, or a machine
without `onnx`/`onnxruntime`, uses the reference torch runtime (`load_embedder` falls back).

The export lives in `<cache_dir>/onnx/<model>-<key>/` and is made once per model version: torch
exports the graph (eager attention, so the optimizer can fuse it), ONNX Runtime's optimizer fuses it,
and the result is accepted only if its vectors are within 0.999 cosine of the torch model's on
Vietnamese and English probe texts (`meta.json` records the check). Because the vectors agree, an
index built by either runtime is used by the other: the index records the model name, not the runtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed import _WindowedEmbedder

log = logging.getLogger(__name__)

EXPORT_VERSION = "1"  # bump when the export recipe changes, so old exports are redone
MIN_COSINE = 0.999  # below this the export is rejected and the torch runtime is used
# Texts per session.run. Small batches were fastest on the shared 2-core machine (500 viwiki sentences,
# fused fp32 graph, same run): 8 -> 1,360-1,410 tokens/s, 16 -> 1,270-1,300, 32 -> 950-1,170,
# 128 -> 360-575. Texts are sorted by length first, so small batches also waste no padding.
BATCH = 8

# Real text in both languages, short and long (the long one is windowed), for the export check.
PROBE_TEXTS = [
    "Nhật Bản là nhà tài trợ ODA lớn nhất cho Việt Nam trong nhiều năm.",
    "Tuyến metro số 1 Bến Thành – Suối Tiên được xây dựng bằng vốn vay của Cơ quan Hợp tác Quốc tế Nhật Bản (JICA).",
    "Japan has been Vietnam's largest provider of official development assistance for many years.",
    "The Japan International Cooperation Agency financed the Ben Thanh - Suoi Tien metro line.",
    "thu tuong hai nuoc da ky ket thoa thuan hop tac ve nang luong va chuyen doi so",
    " ".join(
        ["Hai bên nhất trí thúc đẩy hợp tác trong các lĩnh vực đầu tư, thương mại, lao động, giáo dục, "
         "khoa học công nghệ, nông nghiệp, ứng phó biến đổi khí hậu và giao lưu nhân dân."] * 6
    ),
]


def _model_key(model_dir: Path) -> str:
    """Changes when the weights, the tokenizer, the export recipe or onnxruntime change."""
    import onnxruntime

    h = hashlib.sha1()
    h.update(f"{EXPORT_VERSION}|{onnxruntime.__version__}|{model_dir.resolve()}".encode())
    for name in sorted(os.listdir(model_dir)):
        path = model_dir / name
        if path.is_file():
            st = path.stat()
            h.update(f"|{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _check_architecture(model_dir: Path) -> None:
    """Raise unless the model is Transformer -> mean pooling [-> Normalize] (what `_pool` reproduces)."""
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"unsupported sentence-transformers pipeline {kinds}")
    pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads((model_dir / pooling_dir / "config.json").read_text(encoding="utf-8"))
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"unsupported pooling {modes}")
    if not (model_dir / "tokenizer.json").exists():
        raise ValueError("no tokenizer.json (fast tokenizer) in the model folder")


def _max_seq_length(model_dir: Path) -> int:
    path = model_dir / "sentence_bert_config.json"
    if path.exists():
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
        if value:
            return int(value)
    return 512


def export(model_dir: Path, dest: Path, reference: _WindowedEmbedder) -> dict[str, Any]:
    """Export `model_dir` to `dest/model.onnx`, fuse it, and check it against `reference` (torch).

    Written to a temporary folder and renamed into place, so concurrent processes never see half a model.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sample = tokenizer(PROBE_TEXTS[:2], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        raw = staging / "raw.onnx"
        axes = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
        with torch.no_grad():
            torch.onnx.export(
                LastHidden(model), tuple(sample[n] for n in names), str(raw), input_names=names,
                output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        fused = False
        try:
            from onnxruntime.transformers import optimizer

            optimized = optimizer.optimize_model(
                str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size), opt_level=1,
            )
            optimized.save_model_to_file(str(staging / "model.onnx"))
            raw.unlink()
            fused = True
        except Exception as exc:  # the unfused graph is still correct, only slower
            log.info("ONNX transformer optimizer failed (%s); using the plain export.", exc)
            raw.rename(staging / "model.onnx")
        shutil.copy(model_dir / "tokenizer.json", staging / "tokenizer.json")
        candidate = OnnxEmbedder(reference.name, staging, max_tokens=_max_seq_length(model_dir), batch_size=32)
        cos = np.sum(candidate.embed_documents(PROBE_TEXTS) * reference.embed_documents(PROBE_TEXTS), axis=1)
        qcos = np.sum(candidate.embed_queries(PROBE_TEXTS[:2]) * reference.embed_queries(PROBE_TEXTS[:2]), axis=1)
        meta = {
            "model_dir": str(model_dir.resolve()),
            "export_version": EXPORT_VERSION,
            "fused": fused,
            "max_tokens": _max_seq_length(model_dir),
            "min_cosine_to_torch": float(min(cos.min(), qcos.min())),
            "accepted": bool(min(cos.min(), qcos.min()) >= MIN_COSINE),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if dest.exists():  # another process finished first; its export is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
            return json.loads((dest / "meta.json").read_text(encoding="utf-8"))
        os.replace(staging, dest)
        return meta
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OnnxEmbedder(_WindowedEmbedder):
    """A mean-pooling sentence-transformers model on ONNX Runtime; same vectors as the torch runtime."""

    runtime = "onnx"

    def __init__(self, name: str, folder: Path, *, max_tokens: int, batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = name
        self.batch_size = batch_size
        self._max_tokens = max_tokens
        self._set_prefixes()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between ops: on a shared 2-core machine spinning workers steal the cores that
        # the BM25 and numpy work of the same query needs (the same reason numpy gets one BLAS thread).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.no_padding()
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def _token_counts(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._counter.encode_batch([t.strip() for t in texts], add_special_tokens=False)]

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Normalised mean-pooled vectors; texts are batched by length so padding wastes little."""
        encodings = self._tokenizer.encode_batch([t.strip() for t in texts])
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(encodings[r].ids) for r in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for k, r in enumerate(rows):
                e = encodings[r]
                ids[k, : len(e.ids)] = e.ids
                mask[k, : len(e.ids)] = 1
                types[k, : len(e.ids)] = e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1).clip(min=1e-9)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)
        return out


def load_onnx_embedder(name: str, model_dir: Path, cache_dir: Path, *, batch_size: int = 32) -> OnnxEmbedder:
    """The ONNX runtime for the model in `model_dir`, exporting it on first use; raises when unusable."""
    _check_architecture(model_dir)
    dest = cache_dir / "onnx" / f"{model_dir.name}-{_model_key(model_dir)}"
    if not (dest / "meta.json").exists():
        from rag.embed import SentenceTransformerEmbedder

        log.info("Exporting %s to ONNX (once) under %s", name, dest)
        meta = export(model_dir, dest, SentenceTransformerEmbedder(name, batch_size=batch_size))
    else:
        meta = json.loads((dest / "meta.json").read_text(encoding="utf-8"))
    if not meta.get("accepted"):
        raise ValueError(f"ONNX export disagrees with torch (min cosine {meta.get('min_cosine_to_torch')})")
    return OnnxEmbedder(name, dest, max_tokens=int(meta["max_tokens"]), batch_size=min(batch_size, BATCH))
