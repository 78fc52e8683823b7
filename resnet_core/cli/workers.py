"""How many worker processes a command-line run gets: the one place that decides it.

Tiny layers are dispatch-bound: on a CPU, one process per core (at most one per piece of work,
each with one torch thread) nearly doubles throughput over one, while more processes than cores
only take turns. On a GPU one process drives it. Torch-free: torch is only imported to ask about a
GPU where the machine could have one.
"""
from __future__ import annotations

import os

from resnet_core.settings import Settings, SettingsError

# Device files that a CUDA (or ROCm) GPU needs; without any of them torch cannot see one.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def check_workers(workers: int) -> int:
    """--workers: 0 picks one per core (at most one per model); more processes than cores only take
    turns on them, and each holds a copy of torch and the data."""
    cores = os.cpu_count() or 1
    if not 0 <= workers <= cores:
        raise SettingsError(f"--workers must be from 0 (automatic) to {cores}, this machine's cores (got {workers})")
    return workers


def per_core(pieces: int) -> int:
    """Worker processes for ``pieces`` independent pieces of work on a CPU: one per core, at most one
    per piece."""
    return max(1, min(os.cpu_count() or 1, pieces))


def default_workers(settings: Settings, pieces: int, on_gpu: int) -> int:
    """``per_core(pieces)`` on a CPU; ``on_gpu`` where the run trains on a GPU (a run's one worker
    process; a sweep's 0: its jobs run in this process)."""
    return on_gpu if trains_on_gpu(settings) else per_core(pieces)


def trains_on_gpu(settings: Settings) -> bool:
    if settings.device == "cpu" or (settings.device == "auto" and not gpu_possible()):
        return False
    from resnet_core.training.lockstep import resolve_device

    return resolve_device(settings.device).type == "cuda"


def gpu_possible() -> bool:
    return os.name != "posix" or any(os.path.exists(p) for p in GPU_DEVICE_FILES)
