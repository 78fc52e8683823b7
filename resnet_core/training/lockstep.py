"""Several models trained in lockstep: the same batches, in the same order, step by step.

``LockstepTrainer`` is synchronous and owns no thread: whoever drives it (a worker process, for
the CLI and the dashboard alike: ``resnet_core/worker.py``) decides when to step, pause or reset.
A model whose loss turns NaN or infinite is marked diverged at that step and left alone;
the others go on.
"""
from __future__ import annotations

import contextlib
import math
import platform
import time
from typing import Any, Iterable, Iterator, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from resnet_core.training.tensors import Dataset, load_dataset
from resnet_core.nets import mlp_stack
from resnet_core.nets.models import Net, Probe, build_model, parameter_count
from resnet_core.training import optim
from resnet_core.training.probes import calibrate_batch_norm, evaluate, layer_snapshot
from resnet_core.records import RunRecord, run_finished
from resnet_core.sizing import budget
from resnet_core.settings import Settings, SettingsError

EVAL_LIMIT = 2048  # points of each split used for the error curves (all of them for the 2D sets)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
    return torch.device(name)


class BatchStream:
    """Shuffled mini-batches from one seed; every trainer built with the same seed and data size
    draws exactly the same index sequence, in this process or another."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, min(batch_size, n)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.order):
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


def check_fits(settings: Settings, data: Dataset, models: tuple[str, ...] | None = None) -> None:
    """Refuse, before anything is built, a run the data or the machine cannot hold: the weight cap
    and the memory budget of ``resnet_core.sizing.budget``, counted on the real data's shape."""
    budget.check_fits(settings, budget.shape_of(data), models)


def make_optimizer(settings: Settings, params) -> optim.FusedOptimizer:
    """torch.optim's fused SGD or Adam, bit for bit, without its import of torch._dynamo (training/optim.py)."""
    if settings.optimizer == "adam":
        return optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def run_config(settings: Settings, data: Dataset, models: list[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    return {
        "settings": settings.to_dict(),
        "models": models,
        "seed": settings.seed,
        "dataset": {"name": data.name, "train": len(data.x_train), "test": len(data.x_test),
                    "classes": data.n_classes, "input_shape": list(data.input_shape)},
        "device": str(device),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
    }


class Recorder(Protocol):
    """A step hook: what a run records of its nets besides the error curves (``analysis/recorders.py``).
    ``later`` (where it says so): at step 0 it may wait for the first step (``answer_first``)."""

    name: str

    def due(self, trainer: "LockstepTrainer") -> bool: ...

    def __call__(self, trainer: "LockstepTrainer", **kwargs: Any) -> None: ...


class Prepared(NamedTuple):
    """A step's forward and backward passes done already, as members of stacks shared with other
    trainers' models (``training/member_stacks.py``): the batch drawn for it, and for each model
    passed (its gradients in its parameters) its loss and its probe (None where not probing)."""

    idx: torch.Tensor
    passes: dict[str, tuple[torch.Tensor, Probe | None]]
    wall_s: float  # this trainer's part of the stacked passes' time


class AtStep:
    """What a recorder reads of a trainer, as it was at one step, so that it may record after the
    trainer has stepped on (``LockstepTrainer.answer_first``): its nets' weights and BN statistics
    copied now (one copy of their tensors), and put back into the nets for the recorders
    (``as_then``), then brought forward again. BN's batch counters are left to count on, as if the
    recorders had run then."""

    def __init__(self, trainer: "LockstepTrainer"):
        self.settings, self.step, self.data, self.device = trainer.settings, trainer.step, trainer.data, trainer.device
        self.x_train, self.y_train, self.eval_sets, self.record = (trainer.x_train, trainer.y_train, trainer.eval_sets,
                                                                   trainer.record)
        self._models = list(trainer.training_models())
        self._then = [t.detach().clone() for t in self._tensors()]

    def _tensors(self) -> list[torch.Tensor]:
        return [t for _, net in self._models for key, t in net.state_dict(keep_vars=True).items()
                if not key.endswith("num_batches_tracked")]

    def training_models(self) -> Iterator[tuple[str, Net]]:
        return iter(self._models)

    @contextlib.contextmanager
    @torch.no_grad()
    def as_then(self) -> Iterator[None]:
        tensors = self._tensors()
        now = [t.detach().clone() for t in tensors]
        torch._foreach_copy_(tensors, self._then)
        try:
            yield
        finally:
            torch._foreach_copy_(tensors, now)


class LockstepTrainer:
    def __init__(self, settings: Settings, data: Dataset | None = None, record: RunRecord | None = None,
                 only: tuple[str, ...] | None = None, recorders: Iterable[Recorder] = (), answer_first: bool = False):
        """``only`` restricts this trainer to some of the settings' models (one worker's share);
        batches and initial weights are the same as if it trained all of them. ``recorders``: the
        step hooks that record more than the error curves and the layer probes (by default none;
        ``analysis.recorders.standard()`` is what the app and the command line record).
        ``answer_first``: the recorders due at step 0 that may wait (``Recorder.later``) record when
        ``record_later`` is called, on the nets put back as they were (``AtStep``): a dashboard run's
        first step, the answer to a click, does not wait behind them (they are about half of a build)."""
        self.settings = settings.checked()
        self.device = resolve_device(self.settings.device)
        self.data = data or load_dataset(self.settings.dataset, self.settings.dataset_args)
        names = only or self.settings.models
        check_fits(self.settings, self.data, tuple(names))
        specs = [s for s in self.settings.model_specs if s.name in names]
        self.models: dict[str, Net] = {
            s.name: build_model(s, self.settings, self.data.input_shape, self.data.n_classes).to(self.device) for s in specs
        }
        self.optimizers = {n: make_optimizer(self.settings, m.parameters()) for n, m in self.models.items()}
        self.status = {n: "ok" for n in self.models}
        self.diverged_at: dict[str, int] = {}
        self.error: str | None = None
        d = self.data
        self.x_train, self.y_train = d.x_train.to(self.device), d.y_train.to(self.device)
        self.eval_sets = {
            "train": (self.x_train[:EVAL_LIMIT], self.y_train[:EVAL_LIMIT]),
            "test": (d.x_test[:EVAL_LIMIT].to(self.device), d.y_test[:EVAL_LIMIT].to(self.device)),
        }
        self.batches = BatchStream(len(d.x_train), self.settings.batch_size, self.settings.seed)
        self.record = record if record is not None else RunRecord()
        if not self.record.config:
            models = [{"name": n, "family": m.spec.family, "arch": self.settings.arch, "depth": m.spec.depth,
                       "blocks": len(m.blocks), "parameters": parameter_count(m)} for n, m in self.models.items()]
            self.record.config = run_config(self.settings, d, models, self.device)
        self.record.layer_names.update({n: m.layer_names() for n, m in self.models.items()})
        self.step = 0
        self.wall_s = 0.0
        self.prepared: Prepared | None = None  # the next step's passes, when done in a stack
        for net in self.models.values():
            calibrate_batch_norm(net, self.eval_sets["train"][0][:1024])
        self.recorders = {r.name: r for r in recorders}
        self._later: list[tuple[Recorder, AtStep]] = []  # held back at step 0 (answer_first)
        self._answer_first = answer_first
        self._record_step()

    # ---- control ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return run_finished(self.step, self.settings.steps, self.status)

    def set_lr(self, lr: float) -> None:
        """Takes effect at the next step (the dashboard's learning-rate slider mid-run)."""
        self.settings = self.settings.with_changes(lr=lr)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr

    def set_steps(self, steps: int) -> None:
        """A new end for the run (the dashboard's step count mid-run): it evaluates at that step,
        whether or not it falls on ``eval_every``."""
        self.settings = self.settings.with_changes(steps=steps)

    # ---- one step --------------------------------------------------------------------------
    def train_step(self) -> None:
        """One update of every model still training, on one shared batch: each model's forward
        and backward pass its own, or done already in a stack (``prepared``), then its own update."""
        s = self.settings
        prepared, self.prepared = self.prepared, None
        idx = self.batches.next().to(self.device) if prepared is None else prepared.idx
        xb, yb = self.x_train[idx], self.y_train[idx]
        probing = self.step % s.probe_every == 0
        started = time.perf_counter() - (0.0 if prepared is None else prepared.wall_s)
        for name, net in self.models.items():
            if self.status[name] != "ok":
                continue
            opt = self.optimizers[name]
            if prepared is not None and name in prepared.passes:
                loss, probe = prepared.passes[name]
            else:
                probe = Probe() if probing else None
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(mlp_stack.forward(net, xb, probe), yb)
                loss.backward()
            if not math.isfinite(loss.item()):
                self._diverge(name)
                continue
            if probing:
                self.record.add_layers(name, layer_snapshot(net, probe, self.step))
            opt.step()
        self.wall_s += time.perf_counter() - started
        self.step += 1
        self._record_step()
        if self._later and self.done:  # a run that ends here: nothing comes after it to wait for
            self.record_later()

    # ---- what is recorded of the nets as they train --------------------------------------------
    def evaluating(self) -> bool:
        """Whether the current step is evaluated: at step 0, at the cadence, and at the last step."""
        k = self.step
        return k % self.settings.eval_every == 0 or k == self.settings.steps

    def training_models(self) -> Iterator[tuple[str, Net]]:
        """(name, net) of every model still training (not diverged)."""
        return ((name, net) for name, net in self.models.items() if self.status[name] == "ok")

    def _record_step(self) -> None:
        """The error curves where the step is evaluated, then every recorder due at this step."""
        if self.evaluating():
            self.record.add_metrics(self.evaluate_all())
        then = None
        for recorder in self.recorders.values():
            if recorder.due(self):
                if self._answer_first and self.step == 0 and getattr(recorder, "later", False):
                    then = then or AtStep(self)
                    self._later.append((recorder, then))
                else:
                    recorder(self)

    @property
    def later(self) -> bool:
        """Whether recorders held back at step 0 (``answer_first``) have yet to record."""
        return bool(self._later)

    def record_later(self) -> None:
        """The recorders held back at step 0, now, on the nets as they were then."""
        later, self._later = self._later, []
        for recorder, then in later:
            with then.as_then():
                recorder(then)

    def _diverge(self, name: str) -> None:
        self.status[name] = "diverged"
        self.diverged_at[name] = self.step
        self.record.add_metrics([{"step": self.step, "model": name, "train_loss": math.nan, "train_error": math.nan,
                                  "test_error": math.nan, "wall_s": round(self.wall_s, 4), "status": "diverged"}])

    def evaluate_all(self) -> list[dict[str, Any]]:
        rows = []
        for name, net in self.training_models():
            # Divergence is judged on the training step's loss alone; an evaluation that overflows
            # (a deep net's running BN statistics lagging its weights) only leaves a gap in the curve.
            train_loss, train_error = evaluate(net, *self.eval_sets["train"], batch_stats=True)
            _, test_error = evaluate(net, *self.eval_sets["test"])
            train_loss, train_error, test_error = (v if math.isfinite(train_loss) else math.nan
                                                   for v in (train_loss, train_error, test_error))
            rows.append({"step": self.step, "model": name, "train_loss": train_loss, "train_error": train_error,
                         "test_error": test_error, "wall_s": round(self.wall_s, 4), "status": "ok"})
        return rows

    def call(self, name: str, **kwargs: Any) -> None:
        """Run one of this trainer's recorders now, by name (the call a worker process takes)."""
        if name not in self.recorders:
            raise ValueError(f"this run records no {name!r}; it records: {', '.join(self.recorders) or 'error curves only'}")
        self.recorders[name](self, **kwargs)

    def run(self, steps: int | None = None, on_step=None) -> RunRecord:
        """Train to the settings' step count (or ``steps`` more), calling ``on_step(self)`` after each
        (a job sharing its worker process is paused there when its time slice is spent)."""
        target = self.settings.steps if steps is None else min(self.settings.steps, self.step + steps)
        while self.step < target and not self.done:
            self.train_step()
            if on_step is not None:
                on_step(self)
        return self.record
