"""Compress the query encoder: distil, prune, quantise to int8, export to ONNX, serve with ONNX Runtime.

Items are encoded offline, in batch, by the full fine-tuned encoder (the teacher); only the query
encoder runs per request, so it is the part that is compressed. The student keeps the teacher's
embedding space (it is distilled on the teacher's embeddings with an MSE loss), so the item
embeddings, the ANN index and the ranker stay valid.

Variants, each measured for size on disk, latency (batch 1, 2 threads) and nDCG@10 of the whole
search path on the held-out queries:
  teacher-fp32-torch   the fine-tuned MiniLM-L6 as trained
  teacher-fp32-onnx    the same graph in ONNX Runtime
  teacher-int8-onnx    ONNX Runtime dynamic int8 quantisation of it
  student-int8-onnx    four of the six layers, a quarter of the feed-forward neurons pruned by
                       weight magnitude, distilled, then int8 in ONNX Runtime
The gate promotes the smallest variant that is at least MIN_SHRINK x smaller, MIN_SPEEDUP x faster
and within MAX_QUALITY_LOSS (relative nDCG@10) of the teacher; if none passes, the teacher serves.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

MIN_SHRINK, MIN_SPEEDUP, MAX_QUALITY_LOSS = 4.0, 3.0, 0.01
QUERY_TOKENS = 32          # queries are short; the student is trained and exported at this length
# Texts the student distils on at most by default (settings.distil_max_texts; a random sample past it):
# the default shop's ~5,600 (5,000 titles and its queries) distil in about 4 minutes on 2 cores; Home
# Depot's 54,667 titles would take hours for no measured gain.
MAX_DISTIL_TEXTS = 6000
FFN_KEEP = 0.75            # share of feed-forward neurons the student keeps
DISTIL_EPOCHS = 8          # from the teacher's own layers
STUDENT = "student"        # the promoted student's weights (fp16) beside a version: the next distillation starts there


class _Pooled(nn.Module):
    """input ids + mask -> unit-length mean-pooled embedding (what TextEncoder computes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class OnnxTextEncoder:
    """TextEncoder's interface over an ONNX Runtime session (tokenizer from the same folder)."""

    def __init__(self, folder: Path, threads: int = 2):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.folder = Path(folder)
        self.session = ort.InferenceSession(str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                   max_length=QUERY_TOKENS, return_tensors="np")
            out.append(self.session.run(None, {k: batch[k].astype(np.int64) for k in
                                               ("input_ids", "attention_mask", "token_type_ids")})[0])
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


def export_onnx(model, tokenizer, folder: Path, quantise: bool) -> Path:
    """Write folder/model.onnx (int8 weights when ``quantise``) and the tokenizer beside it."""
    from shoploop.pipeline.progress import quiet

    folder.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["a red frying pan"], return_tensors="pt")
    fp32 = folder / ("model.fp32.onnx" if quantise else "model.onnx")
    # The tracer's notes on transformers' masking code and opset 17's index lowering are about code
    # paths a fixed-shape encoder never takes; onnxruntime's pre-processing advice is for CNNs.
    # The legacy exporter is chosen (dynamo=False): the new one needs onnxscript, and after it the
    # model must be reloaded; torch's notice that it is legacy is for torch to act on, not a user.
    with quiet("Converting a tensor to a Python boolean", "Exporting aten::index operator",
               "Please consider to run pre-processing before quantization",
               "legacy TorchScript-based ONNX export", "The feature will be removed"):
        _export(model, sample, fp32, folder, quantise)
    tokenizer.save_pretrained(folder)
    return folder / "model.onnx"


def _pretrained(folder: Path, dtype: torch.dtype | None = None):
    """A saved encoder loaded afresh (after a legacy ONNX export a model must be reloaded), in ``dtype``."""
    from transformers import AutoModel

    from shoploop.pipeline.progress import quiet

    with quiet(transformers_bars=True):
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return model if dtype is None else model.to(dtype)


def _export(model, sample, fp32: Path, folder: Path, quantise: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.onnx.export(_Pooled(model).eval(), (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
                      str(fp32), input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["embedding"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "token_type_ids")})
    if quantise:
        # Gather too: the word-embedding table is most of a small BERT's bytes.
        quantize_dynamic(str(fp32), str(folder / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gather"])
        fp32.unlink()


def prune_ffn(model, keep: float) -> None:
    """Structured pruning: drop the feed-forward neurons with the smallest in x out weight norms,
    the same number in every layer (BERT's config has one intermediate size)."""
    layers = model.encoder.layer
    n_keep = int(model.config.intermediate_size * keep)
    for layer in layers:
        up, down = layer.intermediate.dense, layer.output.dense
        importance = up.weight.norm(dim=1) * down.weight.norm(dim=0)
        kept = torch.sort(torch.topk(importance, n_keep).indices).values
        new_up, new_down = nn.Linear(up.in_features, n_keep), nn.Linear(n_keep, down.out_features)
        with torch.no_grad():
            new_up.weight.copy_(up.weight[kept])
            new_up.bias.copy_(up.bias[kept])
            new_down.weight.copy_(down.weight[:, kept])
            new_down.bias.copy_(down.bias)
        layer.intermediate.dense, layer.output.dense = new_up, new_down
    model.config.intermediate_size = n_keep


STUDENT_LAYERS = (0, 2, 4, 5)  # of the teacher's six: spread out, and the last one kept


def make_student(teacher_dir: Path):
    """Four of the teacher's six layers (DistilBERT-style initialisation), then feed-forward pruning."""
    from transformers import AutoModel

    from shoploop.pipeline.progress import quiet

    with quiet(transformers_bars=True):
        student = AutoModel.from_pretrained(teacher_dir, local_files_only=True)
    keep = list(STUDENT_LAYERS)
    student.encoder.layer = nn.ModuleList(student.encoder.layer[i] for i in keep)
    student.config.num_hidden_layers = len(keep)
    prune_ffn(student, FFN_KEEP)
    return student


def distil(student, tokenizer, texts: list[str], targets: np.ndarray, epochs: int = DISTIL_EPOCHS, batch_size: int = 64,
           lr: float = 1e-4, seed: int = 7) -> list[float]:
    """Train the student to reproduce the teacher's unit embeddings (MSE, scaled by dimension)."""
    torch.manual_seed(seed)
    pooled = _Pooled(student).train()
    optimiser = torch.optim.AdamW(student.parameters(), lr=lr)
    target = torch.from_numpy(targets)
    from shoploop.pipeline.progress import bar

    rng, losses = np.random.default_rng(seed), []
    shown = bar(total=epochs * -(-len(texts) // batch_size), desc="distilling the student", unit="step")
    for epoch in range(epochs):
        order, total = rng.permutation(len(texts)), 0.0
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=QUERY_TOKENS,
                              return_tensors="pt")
            emb = pooled(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            loss = ((emb - target[idx]) ** 2).sum(-1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
            shown.update(1)
            shown.set_postfix(epoch=f"{epoch + 1}/{epochs}", refresh=False)
        losses.append(round(total / len(texts), 5))
    shown.close()
    student.eval()
    return losses


def latency_ms(encoder, queries: list[str], threads: int = 2, repeats: int = 1) -> float:
    """Median milliseconds per single-query encode, tokenisation included."""
    torch.set_num_threads(threads)
    encoder.encode(queries[:5])  # warm-up
    times = []
    for _ in range(repeats):
        for q in queries:
            started = time.perf_counter()
            encoder.encode([q])
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def folder_mb(path: Path) -> float:
    """Model weights on disk (the tokenizer files every variant shares are not counted)."""
    files = [p for p in Path(path).rglob("*") if p.suffix in (".onnx", ".safetensors", ".bin")]
    return round(sum(p.stat().st_size for p in files) / 2**20, 2)


@dataclass
class Variant:
    name: str
    folder: Path
    size_mb: float
    latency_ms: float
    ndcg: float

    def row(self, teacher: "Variant") -> dict:
        return {"variant": self.name, "size_mb": self.size_mb, "latency_ms": self.latency_ms,
                "ndcg@10": self.ndcg, "shrink": round(teacher.size_mb / self.size_mb, 2),
                "speedup": round(teacher.latency_ms / self.latency_ms, 2),
                "quality_loss": round(1 - self.ndcg / teacher.ndcg, 4) if teacher.ndcg else 0.0}


def gate(rows: list[dict]) -> tuple[str | None, str]:
    """The smallest variant within budget, or None (the teacher serves) with the reason."""
    passing = [r for r in rows if r["shrink"] >= MIN_SHRINK and r["speedup"] >= MIN_SPEEDUP
               and r["quality_loss"] <= MAX_QUALITY_LOSS]
    if not passing:
        return None, (f"no variant is >= {MIN_SHRINK}x smaller, >= {MIN_SPEEDUP}x faster and within "
                      f"{MAX_QUALITY_LOSS:.0%} nDCG@10 of the teacher")
    best = min(passing, key=lambda r: r["size_mb"])
    return best["variant"], (f"{best['variant']}: {best['shrink']}x smaller, {best['speedup']}x faster, "
                             f"nDCG@10 loss {best['quality_loss']:.2%}")


def compress(engine, test_queries: list[str], train_queries: list[str], titles: list[str], work: Path,
             evaluate, seed: int = 7, max_texts: int = MAX_DISTIL_TEXTS, warm_student: Path | None = None,
             warm_epochs: int = 3) -> dict:
    """Build and measure every variant for the engine's bundle; returns the report (rows, promoted).

    ``evaluate(engine) -> nDCG@10`` on the held-out queries, whose texts (``test_queries``) also
    time each variant; the student is distilled on ``train_queries`` (never held-out ones) and
    item ``titles``, with the teacher's embeddings of them as targets. It starts from the teacher's
    own layers (``DISTIL_EPOCHS``), or from ``warm_student`` (the champion's, for ``warm_epochs``):
    a retrained teacher moved on from the champion's, so its student need only follow. When the
    student is promoted, its weights are kept in ``work/STUDENT`` for the next distillation.
    """
    from transformers import AutoTokenizer

    bundle = engine.bundle
    teacher_dir = bundle.encoder_dir
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True)
    held_out = sorted(test_queries)[:200]
    teacher_encoder = engine.encoder
    variants = [Variant("teacher-fp32-torch", teacher_dir, folder_mb(teacher_dir),
                        latency_ms(teacher_encoder, held_out), evaluate(engine))]
    timings = {}
    for name, quantise in (("teacher-fp32-onnx", False), ("teacher-int8-onnx", True)):
        # A fresh load each time: a legacy export leaves the module unfit for further use.
        export_onnx(_pretrained(teacher_dir), tokenizer, work / name, quantise)
    started = time.perf_counter()
    student = make_student(teacher_dir) if warm_student is None else _pretrained(warm_student, torch.float32)
    texts = list(dict.fromkeys(train_queries + titles))
    if len(texts) > max_texts:
        texts = [texts[i] for i in sorted(np.random.default_rng(seed).choice(len(texts), max_texts, replace=False))]
    losses = distil(student, tokenizer, texts, teacher_encoder.encode(texts), seed=seed,
                    epochs=DISTIL_EPOCHS if warm_student is None else warm_epochs)
    timings["distil_s"] = round(time.perf_counter() - started, 1)
    student_dir = work / "student-fp32"
    from shoploop.pipeline.progress import quiet

    with quiet(transformers_bars=True):  # transformers' "Writing model shards" bar, even off a terminal
        student.save_pretrained(student_dir)
    export_onnx(_pretrained(student_dir), tokenizer,
                work / "student-int8-onnx", quantise=True)
    for name in ("teacher-fp32-onnx", "teacher-int8-onnx", "student-int8-onnx"):
        encoder = OnnxTextEncoder(work / name)
        engine.encoder = encoder
        try:
            variants.append(Variant(name, work / name, folder_mb(work / name), latency_ms(encoder, held_out), evaluate(engine)))
        finally:
            engine.encoder = teacher_encoder
    rows = [v.row(variants[0]) for v in variants]
    promoted, reason = gate(rows[1:])
    if promoted == "student-int8-onnx":  # half precision: a starting point, at half the bytes
        with quiet(transformers_bars=True):
            _pretrained(student_dir, torch.float16).save_pretrained(work / STUDENT)
    shutil.rmtree(student_dir, ignore_errors=True)
    return {"rows": rows, "promoted": promoted, "reason": reason, "distil_loss_per_epoch": losses,
            "distil_started_from": "the teacher's layers" if warm_student is None else "the champion's student",
            "distil_texts": len(texts), "student_layers": student.config.num_hidden_layers,
            "student_ffn": student.config.intermediate_size, **timings,
            "budget": {"min_shrink": MIN_SHRINK, "min_speedup": MIN_SPEEDUP, "max_quality_loss": MAX_QUALITY_LOSS},
            "latency": "median ms per single-query encode, 2 threads, tokenisation included"}
