"""The request path's adaptive batching of the query encoder: concurrent queries share forward passes,
each caller gets its own vectors (as the encoder alone gives them), a lone query waits for nothing,
and a failing batch reaches each of its callers without stopping the next."""

import threading
import time

import numpy as np
import pytest

from shoploop.models.encoder import BatchingEncoder


class SlowEncoder:
    """A stand-in with the encoder's interface: each text's vector is derived from the text, and a pass
    takes 20 ms whatever its size (what makes batching pay), releasing the GIL as ONNX Runtime does."""

    dim = 4

    def __init__(self, fail_on: str | None = None):
        self.passes, self.fail_on = [], fail_on

    def encode(self, texts, batch_size=64):
        self.passes.append(list(texts))
        time.sleep(0.02)
        if self.fail_on in texts:
            raise RuntimeError("encoder failed")
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0, 0.0] for t in texts], dtype=np.float32)


def test_concurrent_queries_share_passes_and_each_caller_gets_its_own_vector():
    inner = SlowEncoder()
    batching = BatchingEncoder(inner, max_batch=8)
    start, got = threading.Barrier(32), {}

    def request(i: int) -> None:
        start.wait()
        got[i] = batching.encode([f"query number {i}"])[0]

    threads = [threading.Thread(target=request, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    direct = SlowEncoder()
    for i in range(32):
        np.testing.assert_array_equal(got[i], direct.encode([f"query number {i}"])[0])
    assert batching.calls == 32 and len(inner.passes) == batching.batches < 32
    assert max(len(p) for p in inner.passes) <= 8 and sum(len(p) for p in inner.passes) == 32


def test_a_lone_query_is_one_pass_and_the_catalog_goes_straight_through():
    inner = SlowEncoder()
    batching = BatchingEncoder(inner, max_batch=4)
    assert batching.encode(["red kettle"]).shape == (1, 4) and inner.passes == [["red kettle"]]
    catalog = [f"item {i}" for i in range(10)]
    assert batching.encode(catalog).shape == (10, 4) and inner.passes[-1] == catalog and batching.batches == 1


def test_a_failed_pass_reaches_its_callers_and_the_next_batch_still_runs():
    inner = SlowEncoder(fail_on="bad")
    batching = BatchingEncoder(inner, max_batch=8)
    with pytest.raises(RuntimeError, match="encoder failed"):
        batching.encode(["bad"])
    assert batching.encode(["good"]).shape == (1, 4)


def test_offline_evaluation_encodes_each_text_once_and_answers_as_the_encoder_does():
    from shoploop.models.encoder import RememberingEncoder, TextEncoder

    inner = TextEncoder()
    passes = []
    encode = inner.encode
    inner.encode = lambda texts, batch_size=64: passes.append(list(texts)) or encode(texts, batch_size)
    remembering = RememberingEncoder(inner, ["red skillet", "blue kettle", "red skillet"])
    assert passes == [["red skillet", "blue kettle"]]  # told in advance: one batch, each text once
    for text in ("red skillet", "blue kettle"):
        np.testing.assert_allclose(remembering.encode([text])[0], encode([text])[0], atol=1e-5)
    got = remembering.encode(["blue kettle", "oak desk", "oak desk"])
    assert passes[1:] == [["oak desk"]] and got.shape == (3, inner.dim)
    np.testing.assert_array_equal(got[1], got[2])
    assert remembering.encode([]).shape == (0, inner.dim)


def test_the_base_models_catalog_vectors_are_encoded_once_per_text_and_read_back(tmp_path, monkeypatch):
    from shoploop.models import encoder as module

    file = tmp_path / "cache" / "base-vectors.npz"
    fresh = module.TextEncoder().encode(["red skillet", "blue kettle", "oak desk"])
    encoded = []
    encode = module.TextEncoder.encode
    monkeypatch.setattr(module.TextEncoder, "encode", lambda self, texts, batch_size=64: encoded.append(list(texts)) or encode(self, texts, batch_size))
    first = module.base_vectors(["red skillet", "blue kettle"], file)
    # a catalog that gained an item and lost one: only the new text is encoded, the file holds the latest catalog
    second = module.base_vectors(["blue kettle", "oak desk"], file)
    assert encoded == [["red skillet", "blue kettle"], ["oak desk"]]
    np.testing.assert_allclose(np.vstack([first, second[1:]]), fresh, atol=1e-5)
    np.testing.assert_array_equal(second[0], first[1])
    with np.load(file) as saved:
        assert len(saved["keys"]) == 2
    file.write_bytes(b"not a numpy file")  # unreadable: encoded afresh, never an error
    np.testing.assert_allclose(module.base_vectors(["oak desk"], file), fresh[2:], atol=1e-5)
