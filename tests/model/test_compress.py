"""Compression: ONNX parity with torch, the int8 variants stay close, the gate picks by the budget."""

import json
from datetime import date

import numpy as np
import pytest
import torch

from shoploop.models.compress import STUDENT

pytestmark = pytest.mark.slow

TEXTS = ["red frying pan", "Ferro cast iron skillet, 28 cm", "waterproof hiking boots size 42", "usb c cable"]


@pytest.fixture(scope="module")
def teacher_dir(built):
    from shoploop.pipeline import steps

    return steps.artifacts(built["settings"], date(2026, 11, 29)) / "bundle" / "encoder"


def test_onnx_export_matches_torch(teacher_dir, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from shoploop.models.compress import OnnxTextEncoder, export_onnx
    from shoploop.models.encoder import TextEncoder

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    torch_emb = TextEncoder(teacher_dir).encode(TEXTS)
    export_onnx(AutoModel.from_pretrained(teacher_dir).eval(), tokenizer, tmp_path / "fp32", quantise=False)
    export_onnx(AutoModel.from_pretrained(teacher_dir).eval(), tokenizer, tmp_path / "int8", quantise=True)
    fp32, int8 = OnnxTextEncoder(tmp_path / "fp32").encode(TEXTS), OnnxTextEncoder(tmp_path / "int8").encode(TEXTS)
    # fp32 ONNX is the same function; int8 moves each unit vector only slightly
    assert np.abs(fp32 - torch_emb).max() < 1e-4
    cosine = np.sum(int8 * torch_emb, axis=1)
    assert (cosine > 0.96).all(), cosine
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (tmp_path / "fp32" / "model.onnx").stat().st_size / 3


def test_gate_promotes_the_smallest_variant_within_budget():
    from shoploop.models.compress import gate

    rows = [{"variant": "a", "size_mb": 20, "shrink": 4.5, "speedup": 3.5, "quality_loss": 0.005},
            {"variant": "b", "size_mb": 10, "shrink": 9.0, "speedup": 5.0, "quality_loss": 0.03},
            {"variant": "c", "size_mb": 15, "shrink": 6.0, "speedup": 3.1, "quality_loss": -0.01}]
    assert gate(rows)[0] == "c"
    assert gate(rows[1:2])[0] is None and "within 1%" in gate(rows[1:2])[1]


def test_compress_step_measures_every_variant_and_the_bundle_serves_its_pick(built):
    from shoploop.models.bundle import ModelBundle
    from shoploop.pipeline import steps

    settings = built["settings"]
    report = steps.compress(settings, date(2026, 11, 29))
    names = [r["variant"] for r in report["rows"]]
    assert names == ["teacher-fp32-torch", "teacher-fp32-onnx", "teacher-int8-onnx", "student-int8-onnx"]
    by_name = {r["variant"]: r for r in report["rows"]}
    assert by_name["student-int8-onnx"]["shrink"] >= 4 and by_name["teacher-int8-onnx"]["shrink"] >= 3
    assert report["distil_loss_per_epoch"][-1] < report["distil_loss_per_epoch"][0]
    out = steps.artifacts(settings, date(2026, 11, 29))
    assert json.loads((out / "compression.json").read_text())["promoted"] == report["promoted"]
    bundle = ModelBundle.load(out / "bundle")
    assert (bundle.query_encoder_dir is not None) == (report["promoted"] is not None)
    assert bundle.text_encoder().encode(["red frying pan"]).shape == (1, 384)
    # the champion holds no student (it was registered before this compression): distilled from the teacher's
    # layers; a promoted student is kept beside the version for the next distillation to start from
    assert report["distil_started_from"] == "the teacher's layers"
    assert (out / "bundle" / STUDENT / "config.json").exists() == (report["promoted"] == "student-int8-onnx")


def test_a_kept_student_starts_a_distillation_far_nearer_its_teacher(built, teacher_dir, tmp_path):
    # given the student a compression kept (half precision) / when a distillation starts from it / then its
    # first epoch's loss is a fraction of a fresh student's (the teacher's layers, pruned): why a retraining's
    # student needs fewer epochs
    from transformers import AutoTokenizer

    from shoploop.models.compress import DISTIL_EPOCHS, _pretrained, distil, make_student
    from shoploop.models.encoder import TextEncoder
    from shoploop.pipeline import steps

    kept = steps.artifacts(built["settings"], date(2026, 11, 29)) / "bundle" / STUDENT
    titles = _titles(built["settings"])
    texts = titles[:128]
    teacher = TextEncoder(teacher_dir)
    targets = teacher.encode(texts)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    if not (kept / "config.json").exists():
        # The compression keeps its student only where the gate promoted it, and the gate times every variant:
        # on a machine busy with other tests the student can measure under the 3x speedup. Distil one the way
        # the compression does (the teacher's layers, DISTIL_EPOCHS over the shop's texts), kept in half precision.
        student, corpus = make_student(teacher_dir), titles[:400]
        distil(student, tokenizer, corpus, teacher.encode(corpus), epochs=DISTIL_EPOCHS)
        student.to(torch.float16).save_pretrained(kept := tmp_path / STUDENT)
    warm = distil(_pretrained(kept, torch.float32), tokenizer, texts, targets, epochs=1)[0]
    fresh = distil(make_student(teacher_dir), tokenizer, texts, targets, epochs=1)[0]
    assert warm < fresh / 3, (warm, fresh)


def _titles(settings) -> list[str]:
    import pandas as pd

    return pd.read_parquet(settings.marts / "item_text.parquet")["title"].tolist()
