"""The training entry point under torchrun: DistributedDataParallel over gloo, 2 processes on CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_train_one_version(built):
    settings = built["settings"]
    torchrun = Path(sys.executable).parent / "torchrun"
    shoploop = Path(sys.executable).parent / "shoploop"
    # Its own run date: the session's version for 2026-11-29 stays as the other tests left it. Three
    # fine-tuning steps a process: the distribution is under test, not the model (the fixture's is).
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "--no-python", str(shoploop),
                          "train", "--run-date", "2026-11-30"],
                         env={**os.environ, "OMP_NUM_THREADS": "1", "SHOPLOOP_FINETUNE_MAX_STEPS": "3"},
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((settings.artifacts / "2026-11-30" / "train.json").read_text())
    tuned = report["encoder"]["finetune"]
    assert tuned["world_size"] == 2 and tuned["steps"] == 3  # settings.finetune_max_steps bounds them
    assert (settings.artifacts / "2026-11-30" / "bundle" / "encoder" / "model.safetensors").exists()
    # the helper rank reported its own share
    assert '"rank": 1' in run.stdout
