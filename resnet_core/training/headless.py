"""Training without a page: the trainer that suits the machine, for the command line and notebooks."""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch

from resnet_core.remote.trainer import ParallelTrainer, per_core
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer, resolve_device
from resnet_core.training.tensors import Dataset


def one_torch_thread() -> None:
    """Tiny layers are dispatch-bound: one intra-op thread per process beats two (bench/), and the
    worker processes, one thread each, share the cores."""
    torch.set_num_threads(1)


@contextlib.contextmanager
def every_core() -> Iterator[None]:
    """For the analyses after a one-process run's training: nothing else runs then, and unlike the
    steps they are compute-bound (the lesion study of resnet-1002 re-runs 125,000 blocks on 256
    points: 2.55 s on one thread, 1.56 s on two here, the same rows). The thread count is put back
    after."""
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_workers(settings: Settings) -> int:
    if resolve_device(settings.device).type == "cuda":
        return 1
    return per_core(len(settings.models))


@contextlib.contextmanager
def make_trainer(settings: Settings, data: Dataset | None = None, workers: int = 0) -> Iterator[Any]:
    """One process when that is all there is to use (a GPU, one core, one model), else several."""
    n = workers or default_workers(settings)
    if n <= 1:
        yield LockstepTrainer(settings, data=data)
        return
    trainer = ParallelTrainer(settings, workers=n)  # each worker loads the data itself
    try:
        yield trainer
    finally:
        trainer.close()
