"""Peak memory of real training runs against the estimate that the budget checks.

    .venv/bin/python bench/bench_memory.py [--quick] [--steps 3]

Each case trains a few steps (probed, evaluated, with its path analysis where it has one) in a
fresh process, with the budget lifted, and reports that process's peak resident memory
(``ru_maxrss``) beside ``resnet_core.sizing.budget.estimate_memory``. The figures calibrate the
estimate; its docstring keeps the latest ones. The CIFAR-10 case reads files of random images
in the binary format (the memory is the same as for the real ones).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_core.settings import Settings  # noqa: E402
from resnet_core.sizing.budget import MB, data_shape, estimate_memory  # noqa: E402

CASES = {
    "plain-402, width 96, batch 4096, SGD": dict(models=("plain-402",), width=96, batch_size=4096,
                                                 dataset_args={"n": 8000}, paths_every=0),
    "plain-56, width 512, batch 1024, Adam": dict(models=("plain-56",), width=512, batch_size=1024,
                                                  optimizer="adam", paths_every=0),
    "resnet-1002-pre, width 32, batch 128, paths": dict(models=("resnet-1002",), block="pre", paths_every=2),
    "resnet-56 (CNN), width 32, digits, batch 512": dict(models=("resnet-56",), arch="cnn", width=32,
                                                         dataset="digits", batch_size=512, paths_every=0),
    "plain-8 + resnet-20 (CNN), width 16, CIFAR-10": dict(models=("plain-8", "resnet-20"), arch="cnn", width=16,
                                                          dataset="cifar10", paths_every=0,
                                                          dataset_args={"batches": 1}),
    "plain-8, width 8, batch 128 (the floor)": dict(models=("plain-8",), width=8, paths_every=0,
                                                    dataset_args={"n": 200}),
}
QUICK = ("plain-8, width 8, batch 128 (the floor)", "resnet-56 (CNN), width 32, digits, batch 512")

CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import standard
import resnet_core.data
resnet_core.data.DATA_DIR = resnet_core.data.Path(sys.argv[2])  # the repository's data/ folder
settings = Settings.from_dict(json.loads(sys.argv[1]))
trainer = LockstepTrainer(settings, recorders=standard())
trainer.run()
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def fake_cifar() -> str:
    """data_batch_1.bin and test_batch.bin of random images and labels, in a temporary folder."""
    import tempfile

    import numpy as np

    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1.bin", 10_000), ("test_batch.bin", 10_000)):
        records = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        records.tofile(folder / name)
    return str(folder)


def measure(values: dict, steps: int) -> float | None:
    settings = Settings(**{"eval_every": 1, "probe_every": 1, **values, "steps": steps}).checked()
    env = {**os.environ, "RESIDUAL_LAB_RUN_MEMORY_MB": "100000", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings.to_dict()), str(ROOT / "data")], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        print(f"    failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small cases only")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"{'case':48} {'peak MB':>9} {'estimate MB':>12} {'ratio':>6}")
    cifar = None
    try:
        for name, values in CASES.items():
            if args.quick and name not in QUICK:
                continue
            if values.get("dataset") == "cifar10":
                cifar = cifar or fake_cifar()
                values = {**values, "dataset_args": {**values["dataset_args"], "root": cifar}}
            row(name, values, args.steps)
    finally:
        if cifar:
            shutil.rmtree(cifar, ignore_errors=True)


def row(name: str, values: dict, steps: int) -> None:
    settings = Settings(**{"eval_every": 1, "probe_every": 1, **values, "steps": steps}).checked()
    estimate = estimate_memory(settings, data_shape(settings.dataset, settings.dataset_args)).total / MB
    peak = measure(values, steps)
    if peak is not None:
        print(f"{name:48} {peak:>9,.0f} {estimate:>12,.0f} {estimate / peak:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
