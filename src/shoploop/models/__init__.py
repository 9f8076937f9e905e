"""The models (encoder, ranker, recommender, compression) and what their training shares."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def one_thread():
    """Torch on one intra-op thread inside the block (or the function it decorates), as before after it.

    The seed ranker and SASRec train on small matrices (batches of 512 rows of about 1,160 features; a
    64-wide transformer). A second thread gains them little alone and costs them far more whenever another
    process holds a core (OpenMP's workers wait on a peer the kernel has descheduled): a retraining beside
    the live service and its shoppers, the DAG tests beside the rest of the suite. Measured on this 2-core
    machine (after a warm-up): the ranker's averaged fit (5 fits, 20,000 rows) 1.6-1.9 s on 2 threads and
    2.2-2.5 s on 1 alone, 14.4-16.9 s and 3.3-4.4 s beside two busy processes; SASRec (3,000 histories)
    11.8 s and 13.8 s alone, 68.7 s and 23.6 s beside them; `shoploop train` under torchrun on the test
    shop beside them 270 s, 122 s with this (the ranker's fits 153 -> 19 s, the recommender's 22 -> 6 s).
    The encoder's fine-tuning and encoding (384 wide, 6 layers) keep every thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
