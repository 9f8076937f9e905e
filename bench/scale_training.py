"""Training with several processes: the encoder's fine-tuning (the training step's costly part) in one
process against two under torchrun (DistributedDataParallel over gloo, what `torchrun ... shoploop
train` runs), on the same triplets, measured as training samples per second.

The triplets are (query, judged-relevant item text, another item's text) from a built home's marts
(after `make demo`); throughput does not depend on how good they are. One process uses every core
(torch's threads); under torchrun each of the N processes gets cores / N threads, as `shoploop train`
sets it. ``.venv/bin/python bench/scale_training.py [--steps N]``. Prints a table and saves
bench/results/scale_training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def triplets(marts: Path, n: int) -> list[tuple[str, str, str]]:
    import numpy as np
    import pandas as pd

    pairs = pd.read_parquet(marts / "ranker_training_pairs.parquet")
    text = pd.read_parquet(marts / "item_text.parquet").dropna(subset=["item_id"]).set_index("item_id")["item_text"]
    relevant = pairs[(pairs["grade"] >= 2) & pairs["item_id"].isin(text.index)][["query_text", "item_id"]].drop_duplicates()
    rng = np.random.default_rng(7)
    relevant = relevant.sample(n=min(n, len(relevant)), random_state=7)
    others = rng.choice(text.index.to_numpy(), size=len(relevant))
    return [(q, text[i], text[o]) for q, i, o in zip(relevant["query_text"], relevant["item_id"], others)]


def worker(args) -> None:
    """One process of a run (alone, or a torchrun rank): fine-tune and report its figures."""
    import torch

    from shoploop.models.finetune import FinetuneConfig, finetune

    data = json.loads(Path(args.triplets).read_text())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    config = FinetuneConfig(max_steps=args.steps, batch_size=args.batch)
    with tempfile.TemporaryDirectory() as out:
        report = finetune([tuple(t) for t in data], Path(out) / "encoder", config, distributed=distributed)
    if distributed:
        dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.report).write_text(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per run")
    parser.add_argument("--batch", type=int, default=32, help="triplets per step and process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--triplets", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from shoploop.settings import get_settings

    settings = get_settings()
    if not (settings.marts / "ranker_training_pairs.parquet").exists():
        raise SystemExit(f"training bench: no marts in {settings.home}: run `make demo` first")
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": args.steps, "batch": args.batch, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "triplets.json"
        data.write_text(json.dumps(triplets(settings.marts, args.steps * args.batch * 2)))
        me = [str(Path(__file__).resolve()), "--worker", "--triplets", str(data), "--steps", str(args.steps), "--batch", str(args.batch)]
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        for processes in (1, 2):
            report = Path(tmp) / f"report-{processes}.json"
            command = ([sys.executable, *me] if processes == 1 else
                       [torchrun, "--standalone", "--nproc-per-node", str(processes), *me])
            print(f"{processes} process(es): {args.steps} steps of {args.batch} triplets each ...", flush=True)
            run = subprocess.run([*command, "--report", str(report)], capture_output=True, text=True, timeout=3600)
            if run.returncode != 0:
                raise SystemExit(f"{processes} process(es) failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
            tuned = json.loads(report.read_text())
            samples = tuned["steps"] * args.batch * processes
            result["runs"][str(processes)] = {"seconds": tuned["seconds"], "samples": samples,
                                              "samples_per_s": round(samples / tuned["seconds"], 1),
                                              "final_loss": tuned["loss_per_epoch"][-1]}
            print(f"  {result['runs'][str(processes)]}", flush=True)
    one, two = result["runs"]["1"], result["runs"]["2"]
    result["two_over_one"] = round(two["samples_per_s"] / one["samples_per_s"], 2)
    print(f"\n{'processes':<11}{'samples':>9}{'seconds':>9}{'samples/s':>11}")
    for n, row in result["runs"].items():
        print(f"{n:<11}{row['samples']:>9}{row['seconds']:>9}{row['samples_per_s']:>11}")
    print(f"2 processes / 1: x{result['two_over_one']} ({result['machine']})")
    out = ROOT / "bench" / "results" / "scale_training.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
