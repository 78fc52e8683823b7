"""Training without a page (the command line): one torch thread for the steps, every core for the
analyses after them, and how many processes a run gets."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from resnet_core.remote.trainer import per_core
from resnet_core.settings import Settings
from resnet_core.training.lockstep import resolve_device


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
