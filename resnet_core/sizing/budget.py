"""What a run may hold: a cap on its weights and a budget for its memory, checked before anything
is built. No torch here: the dashboard's server refuses a run with these before a worker is asked
to build it, and the trainer checks the same numbers itself.

The memory estimate adds up what a training process holds at its peak: the interpreter and torch,
the data set, every model's weights with their gradients and optimizer state, the activations that
one training batch leaves for the backward pass (the models of a run train one after the other
within a step, so the largest model's, not their sum), an evaluation chunk, and the path analysis.

Calibrated on this project's reference machine (2 cores, torch 2.13 CPU, one torch thread) against
the peak resident memory (``ru_maxrss``) of a fresh process training a few steps with probes and
evaluations, ``bench/bench_memory.py``; measured peak against this estimate:

    case (3 steps, probed and evaluated every step)      peak      estimate
    plain-402, width 96, batch 4096, SGD               3,406 MB   3,755 MB
    plain-56, width 512, batch 1024, Adam              1,186 MB   1,234 MB
    resnet-1002-pre, width 32, batch 128, paths          614 MB     625 MB
    resnet-56 CNN, width 32, digits, batch 512         1,062 MB   1,216 MB
    plain-8 + resnet-20 CNN, width 16, CIFAR-10 5000   1,450 MB   1,525 MB
    plain-8, width 8, batch 128 (the floor)              375 MB     400 MB

Activations came out at about 4.8 float32 copies of every layer's output for one batch (the
weight's output, the batch norm's, the ReLU's, the probe's references and the backward pass's
buffers, with what the allocator keeps); ``SAVED_PER_OUTPUT`` rounds that up.
The estimate is meant to lie a little above the measurement. Where it is wrong anyway, the
worker process's own limit (``worker_limit_bytes``, set with ``setrlimit`` by the worker itself)
makes the allocation fail in that one process, which reports it as an error of that session.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from resnet_core import config
from resnet_core.sizing import layout as size
from resnet_core.settings import Settings, SettingsError

MAX_WEIGHTS = 20_000_000  # per run: what a classroom server can hold for each of its sessions
MB = 1024 * 1024

# Calibration (see the table above).
BASE_BYTES = 400 * MB       # the interpreter, torch and the trainer's code, before any model
SAVED_PER_OUTPUT = 5.5      # float32 copies of every layer output alive at the peak of a step (measured)
EVAL_CHUNK = 2048           # probes.EVAL_BATCH: evaluation runs in chunks of this many points
EVAL_LIVE = 4.0             # layer outputs alive at once while evaluating one chunk (no graph kept)
PATH_POINTS, PATH_FLOATS = 256, 65536  # analysis.paths.compute.PROBE_POINTS and PROBE_FLOATS
PATH_SAVED = 4.0            # per block: its input, its Jacobian's state, the path terms being summed
SIGNAL_POINTS, JACOBIAN_POINTS = 256, 16  # analysis.signal's probe batch and the Jacobian's points

WORKER_LIMIT_ENV = config.env_name("WORKER_MEMORY_MB")  # what a server passes its worker processes
MACHINE_SHARE = 0.75        # of the machine's memory, shared by the processes that may train or analyse at once


@dataclass(frozen=True)
class DataShape:
    """What the memory of a run depends on in its data: one example's shape, classes, points."""
    input_shape: tuple[int, ...]
    n_classes: int
    n_train: int
    n_test: int

    @property
    def bytes(self) -> int:
        return 4 * size._prod(self.input_shape) * (self.n_train + self.n_test) + 8 * (self.n_train + self.n_test)


def data_shape(dataset: str, args: dict | None = None) -> DataShape:
    """The shape of a data set from its name and arguments, without loading it (at most, for the
    sizes a user's file can reach)."""
    from resnet_core.data import DATASETS

    spec = DATASETS.get(dataset)
    a = {**(spec.defaults if spec else {}), **dict(args or {})}
    test = float(a.get("test_fraction", 0.2))
    if dataset == "digits":
        return _split(1797, test, (1, 8, 8), 10)
    if dataset == "cifar10":
        train = min(int(a["train_limit"]), 10_000 * int(a["batches"]))
        return DataShape((3, 32, 32), 10, train, min(int(a["test_limit"]), 10_000))
    if dataset == "csv":
        from resnet_core.data.files import MAX_CSV_CLASSES, MAX_CSV_ROWS

        return DataShape((2,), MAX_CSV_CLASSES, MAX_CSV_ROWS, MAX_CSV_ROWS)  # a bound: the file may be any size
    classes = int(a.get("arms", a.get("centers", 2)))
    return _split(int(a.get("n", 2000)), test, (2,), classes)


def _split(n: int, test_fraction: float, input_shape: tuple[int, ...], classes: int) -> DataShape:
    """Train and test sizes as ``data.common.stratified_split`` makes them."""
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    return DataShape(input_shape, classes, n - n_test, n_test)


def shape_of(data) -> DataShape:
    """The DataShape of a loaded Dataset (or Arrays)."""
    return DataShape(tuple(int(v) for v in data.x_train.shape[1:]), int(data.n_classes), len(data.x_train),
                     len(data.x_test))


@dataclass(frozen=True)
class MemoryEstimate:
    base: int
    data: int
    weights: int        # weights, their gradients and the optimizer's state, every model
    activations: int    # the largest model's activations for one training batch
    evaluation: int
    paths: int
    largest: str        # the model with the most activations

    @property
    def total(self) -> int:
        return self.base + self.data + self.weights + self.activations + self.evaluation + self.paths

    def advice(self, settings: Settings) -> str:
        """What to lower, by the part that weighs most."""
        parts = {"activations": self.activations, "weights": self.weights, "data": self.data,
                 "paths": self.paths, "evaluation": self.evaluation}
        top = max(parts, key=parts.get)
        if top == "activations":
            return (f"the activations of a batch of {settings.batch_size} through {self.largest} take "
                    f"{_mb(self.activations)}: lower the batch size, the width or the depth")
        if top == "weights":
            return (f"the weights with their gradients and {settings.optimizer} state take {_mb(self.weights)}: "
                    "lower the width or the depth, or the number of models")
        if top == "data":
            return f"the data set takes {_mb(self.data)}: use fewer points"
        if top == "paths":
            return f"the path analysis takes {_mb(self.paths)}: set paths_every to 0 or lower the width"
        return f"an evaluation takes {_mb(self.evaluation)}: lower the width"


def estimate_memory(settings: Settings, shape: DataShape, models: tuple[str, ...] | None = None) -> MemoryEstimate:
    """The peak memory of a training process running ``models`` (default: all) of ``settings``."""
    specs = [s for s in settings.model_specs if models is None or s.name in models]
    states = 2 if settings.optimizer == "adam" else (1 if settings.momentum else 0)
    batch = min(settings.batch_size, shape.n_train)
    weights = activations = evaluation = paths = 0
    largest = specs[0].name if specs else ""
    for spec in specs:
        layers = size.layout(spec, settings, shape.input_shape, shape.n_classes)
        weights += 4 * (2 + states) * sum(layer.parameters for layer in layers)
        act = int(4 * SAVED_PER_OUTPUT * batch * sum(layer.outputs for layer in layers))
        if act > activations:
            activations, largest = act, spec.name
        widest = max(layer.outputs for layer in layers)
        evaluation = max(evaluation, int(4 * EVAL_LIVE * min(EVAL_CHUNK, shape.n_train) * widest))
        if settings.paths_every > 0:  # the path analysis and, at its cadence, the signal and the Jacobian
            blocks = settings.for_model(spec).blocks_for(spec.depth)
            features = max(layer.outputs for layer in layers[1:-1]) if len(layers) > 2 else widest
            points = max(16, min(PATH_POINTS, PATH_FLOATS // max(features, 1), shape.n_train))
            path = int(4 * PATH_SAVED * (2 * blocks + 2) * points * features) if spec.residual else 0
            paths = max(paths, path + _signal_bytes(features, blocks, settings.arch == "mlp"))
    return MemoryEstimate(BASE_BYTES, shape.bytes, weights, activations, evaluation, paths, largest)


def _signal_bytes(features: int, blocks: int, dense: bool) -> int:
    """The signal plot's probe batch through the stack (no graph kept), and for an MLP the exact
    Jacobian: its forward kept for the backward (PATH_SAVED a layer) and one cotangent per output unit."""
    signal = 4 * EVAL_LIVE * SIGNAL_POINTS * features
    if not dense:
        return int(signal)
    return int(signal + 4 * JACOBIAN_POINTS * features * (PATH_SAVED * (2 * blocks + 2) + PATH_SAVED * features))


# ------------------------------------------------------------------------------------ the limits
def physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024 * MB


def server_processes() -> int:
    """Worker processes for a whole server: RESIDUAL_LAB_PROCESSES, else one per core but one, at
    least one. One core is left to serve pages: on 2 cores, 30 sessions with 10 pressing Train got
    page interactions at p95 0.23 s with one training process, 1.2 s with two (bench/load_test.py)."""
    return config.get("PROCESSES") or max(1, (os.cpu_count() or 1) - 1)


def concurrent_processes() -> int:
    """How many runs' memory the machine is shared between: the server's worker processes and one
    more per core, since a worker holds several sessions' runs at once (3 on 2 cores: 6 GB a run on
    a 24 GB machine)."""
    return server_processes() + (os.cpu_count() or 1)


def run_memory_budget() -> int:
    """Bytes one run may take: RESIDUAL_LAB_RUN_MEMORY_MB, else three quarters of the machine's
    memory shared by the processes that may run at once (6 GB on a 24 GB, 2-core machine)."""
    mb = config.get("RUN_MEMORY_MB")
    if mb is not None:
        return mb * MB
    return max(1024 * MB, int(MACHINE_SHARE * physical_memory() / concurrent_processes()))


def server_memory_budget() -> int:
    """Bytes the dashboard server's worker processes may hold together, every session's models in
    them: RESIDUAL_LAB_SERVER_MEMORY_MB, else three quarters of the machine's memory (18 GB on
    24 GB). ``worker_memory_budget`` splits it between the processes."""
    mb = config.get("SERVER_MEMORY_MB")
    return mb * MB if mb is not None else int(MACHINE_SHARE * physical_memory())


def worker_memory_budget(workers: int) -> int:
    """Bytes one of the server's ``workers`` worker processes may hold: its share of the server's
    budget, at least one run's (a run the server accepts always fits an empty process)."""
    return max(server_memory_budget() // max(1, workers), run_memory_budget())


def server_worker_limit_mb(workers: int) -> int:
    """The limit a server's worker process sets on itself: its budget, with the same room for what
    the estimates leave out as one run's process has (``worker_limit_bytes``)."""
    budget = worker_memory_budget(workers)
    return (budget + max(512 * MB, budget // 8)) // MB


def resident_bytes(settings: Settings) -> int:
    """What a run's trainer adds to a worker process that already runs (its estimate without the
    interpreter and torch, which the process holds once for all its runs)."""
    return max(0, check_settings(settings).total - BASE_BYTES)


def server_full_message(used: int, budget: int) -> str:
    """What a session is told when its run, which fits a run's budget, does not fit the server now."""
    return (f"the server is full: the class's runs hold {_mb(used)} of the {_mb(budget)} its training "
            f"process may use ({config.env_name('SERVER_MEMORY_MB')}); your run is not too big: press Train again once a "
            "classmate pauses or finishes (a paused run gives its memory back)")


def worker_limit_bytes() -> int:
    """The address-space data limit a worker process sets on itself: the run budget with room for
    what the estimate leaves out (a quarter more, at least 512 MB)."""
    budget = run_memory_budget()
    return budget + max(512 * MB, budget // 4)


def check_fits(settings: Settings, shape: DataShape, models: tuple[str, ...] | None = None) -> MemoryEstimate:
    """Refuse, with one line saying what to lower, a run the data or the machine cannot hold."""
    if settings.batch_size > shape.n_train:
        raise SettingsError(f"batch_size {settings.batch_size} is larger than the training set "
                            f"({shape.n_train} points); use at most {shape.n_train}")
    specs = [s for s in settings.model_specs if models is None or s.name in models]
    weights = sum(size.parameter_count(s, settings, shape.input_shape, shape.n_classes) for s in specs)
    if weights > MAX_WEIGHTS:
        raise SettingsError(f"these models have {_count(weights)} weights; at most {_count(MAX_WEIGHTS)} fit "
                            "per run: lower the width or the depth")
    estimate = estimate_memory(settings, shape, models)
    budget = run_memory_budget()
    if estimate.total > budget:
        raise SettingsError(f"this run needs about {_mb(estimate.total)} of memory, more than the {_mb(budget)} "
                            f"a run may use here ({config.env_name('RUN_MEMORY_MB')}); {estimate.advice(settings)}")
    return estimate


def check_settings(settings: Settings) -> MemoryEstimate:
    """``check_fits`` on the data set the settings name, sized from its arguments without loading it:
    what the dashboard's server checks before a worker is asked to build the run (cached: a page
    asks on every rerun)."""
    key = json.dumps([settings.to_dict(), run_memory_budget()], sort_keys=True, default=str)
    if key not in _CHECKED:
        try:
            _CHECKED[key] = check_fits(settings, data_shape(settings.dataset, dict(settings.dataset_args)))
        except SettingsError as exc:
            _CHECKED[key] = exc
        while len(_CHECKED) > 256:
            _CHECKED.pop(next(iter(_CHECKED)))
    found = _CHECKED[key]
    if isinstance(found, SettingsError):
        raise SettingsError(str(found))
    return found


_CHECKED: dict[str, MemoryEstimate | SettingsError] = {}


def _mb(n: int) -> str:
    if n >= 10 * 1024 * MB:
        return f"{n / (1024 * MB):.0f} GB"
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):.1f} GB"
    return f"{max(1, math.ceil(n / MB))} MB"


def _count(n: int) -> str:
    return f"{n / 1e6:.3g}M"


def out_of_memory(exc: BaseException) -> bool:
    """An allocation refused by the process's memory limit (or the machine)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text or "out of memory" in text.lower()))


def out_of_memory_message() -> str:
    """What a session is told when its run hit the memory limit of its process."""
    limit = config.get("WORKER_MEMORY_MB")
    allowed = f" ({_mb(limit * MB)})" if limit else ""
    return (f"this run needed more memory than one run's process may use{allowed}: lower the batch size, "
            "the width or the depth")
