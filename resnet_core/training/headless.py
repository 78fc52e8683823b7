"""Torch threads for the work of a process: one for the steps, more for the analyses after them."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch



def one_torch_thread() -> None:
    """Tiny layers are dispatch-bound: one intra-op thread per process beats two (bench/), and the
    worker processes, one thread each, share the cores."""
    torch.set_num_threads(1)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """``count`` intra-op threads for a while (at most the machine's cores), then the count as it
    was. For the analyses after a run's training, which unlike the steps are compute-bound (the
    lesion study of resnet-1002 re-runs 125,000 blocks on 256 points: 2.55 s on one thread, 1.56 s
    on two here, the same rows) and have the cores to themselves."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(count, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
