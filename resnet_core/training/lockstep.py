"""Several models trained in lockstep: the same batches, in the same order, step by step.

``LockstepTrainer`` is synchronous and owns no thread: whoever drives it (the CLI's loop, a
dashboard worker, a subprocess of ``parallel.py``) decides when to step, pause or reset.
A model whose loss turns NaN or infinite is marked diverged at that step and left alone;
the others go on.
"""
from __future__ import annotations

import functools
import math
import platform
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from resnet_core.training.tensors import Dataset, load_dataset
from resnet_core.analysis.paths.lesion import LesionStudy, lesion_rows
from resnet_core.nets import mlp_stack
from resnet_core.nets.models import Net, Probe, build_model, parameter_count
from resnet_core.analysis.paths.compute import analyse_paths, next_start_length, probe_points, rows_for_record
from resnet_core.analysis.lens.compute import lens_rows
from resnet_core.analysis.signal.compute import jacobian_rows, signal_points, signal_rows
from resnet_core.training import optim
from resnet_core.training.analysts import Analyst, Inline
from resnet_core.training.probes import calibrate_batch_norm, evaluate, layer_snapshot
from resnet_core.records import RunRecord, run_finished
from resnet_core.remote.slicing import checkpoint
from resnet_core.sizing import budget
from resnet_core.settings import Settings, SettingsError

REGION_RESOLUTION = 48
REGION_EVERY = 3  # decision maps every third evaluation: each costs about one evaluation
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


class LockstepTrainer:
    def __init__(self, settings: Settings, data: Dataset | None = None, record: RunRecord | None = None,
                 only: tuple[str, ...] | None = None, analyst: Analyst | None = None):
        """``only`` restricts this trainer to some of the settings' models (one worker's share);
        batches and initial weights are the same as if it trained all of them. ``analyst``: who
        runs the analyses of the nets as they train (``analysts.py``): by default this trainer,
        between its steps."""
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
        for net in self.models.values():
            calibrate_batch_norm(net, self.eval_sets["train"][0][:1024])
        self._path_cutoffs: dict[str, int] = {}  # each model's last cutoff: where the next analysis starts
        self.analyst = analyst if analyst is not None else Inline()
        self.analyst.attach(self)
        self.analyst.analyse(self, self.analyses_due())

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
        """One update of every model still training, on one shared batch."""
        s = self.settings
        idx = self.batches.next().to(self.device)
        xb, yb = self.x_train[idx], self.y_train[idx]
        probing = self.step % s.probe_every == 0
        started = time.perf_counter()
        for name, net in self.models.items():
            if self.status[name] != "ok":
                continue
            opt = self.optimizers[name]
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
        due = self.analyses_due()
        if due:
            self.analyst.analyse(self, due)

    # ---- what is recorded of the nets as they train --------------------------------------------
    def analyses_due(self) -> tuple[str, ...]:
        """The analyses the current step records: everything at step 0 and at the last step, else
        each at its cadence (decision maps at every third evaluation, on 2D data)."""
        s, k = self.settings, self.step
        evaluating = k % s.eval_every == 0 or k == s.steps
        due = ["evaluation"] if evaluating else []
        if evaluating and not self.data.is_image and (k % (REGION_EVERY * s.eval_every) == 0 or k == s.steps):
            due.append("decision_regions")
        if s.paths_every > 0 and (k % s.paths_every == 0 or k == s.steps):
            due += ["path_analysis", "signal_analysis", "block_lens"]
        return tuple(due)

    def analyse(self, due: tuple[str, ...]) -> None:
        """Run the analyses named (``analyses_due``) on the nets as they are, here."""
        for method in due:
            getattr(self, method)()

    def evaluation(self) -> None:
        self.record.add_metrics(self.evaluate_all())

    def settle(self) -> None:
        """Wait until the analyses asked for so far are in the record (a ``SecondCore`` runs them
        while the steps go on)."""
        self.analyst.settle()

    def _diverge(self, name: str) -> None:
        self.analyst.settle()  # the evaluations before this step come first in the record
        self.status[name] = "diverged"
        self.diverged_at[name] = self.step
        self.record.add_metrics([{"step": self.step, "model": name, "train_loss": math.nan, "train_error": math.nan,
                                  "test_error": math.nan, "wall_s": round(self.wall_s, 4), "status": "diverged"}])

    def evaluate_all(self) -> list[dict[str, Any]]:
        rows = []
        for name, net in self.models.items():
            if self.status[name] != "ok":
                continue
            # Divergence is judged on the training step's loss alone; an evaluation that overflows
            # (a deep net's running BN statistics lagging its weights) only leaves a gap in the curve.
            train_loss, train_error = evaluate(net, *self.eval_sets["train"], batch_stats=True)
            _, test_error = evaluate(net, *self.eval_sets["test"])
            train_loss, train_error, test_error = (v if math.isfinite(train_loss) else math.nan
                                                   for v in (train_loss, train_error, test_error))
            rows.append({"step": self.step, "model": name, "train_loss": train_loss, "train_error": train_error,
                         "test_error": test_error, "wall_s": round(self.wall_s, 4), "status": "ok"})
        return rows

    @torch.no_grad()
    def decision_regions(self, resolution: int = REGION_RESOLUTION) -> None:
        """For 2D data: each model's predicted class and confidence on a grid over the data."""
        x = self.data.x_train
        lo, hi = (x.min(0).values - 0.1).tolist(), (x.max(0).values + 0.1).tolist()
        gx, gy = torch.linspace(lo[0], hi[0], resolution), torch.linspace(lo[1], hi[1], resolution)
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2).to(self.device)
        for name, net in self.models.items():
            if self.status[name] != "ok":
                continue
            was = net.training
            net.eval()
            prob = torch.softmax(mlp_stack.infer(net, grid), 1)
            net.train(was)
            conf, cls = prob.max(1)
            self.record.set_regions(name, self.step, {
                "x": [lo[0], hi[0]], "y": [lo[1], hi[1]], "n": resolution,
                "classes": cls.cpu().tolist(), "confidence": [round(c, 3) for c in conf.cpu().tolist()]})

    def path_analysis(self) -> None:
        """The unrolled view of every residual model still training (resnet_core.analysis.paths.compute): the exact
        gradient through paths of each length on a fixed probe batch (the first training points),
        and Veit et al.'s sampled per-path norms beside it."""
        for name, net in self.models.items():
            if self.status[name] != "ok" or not net.residual:
                continue
            n = probe_points(net, self.x_train)
            exact, sampled = analyse_paths(net, self.x_train[:n], self.y_train[:n],
                                           start_length=self._path_cutoffs.get(name))
            self._path_cutoffs[name] = next_start_length(exact)
            self.record.add_paths(rows_for_record(exact, sampled, self.step, name))

    def signal_analysis(self) -> None:
        """What the + x does to the signal, for every model still training (resnet_core.analysis.signal):
        the signal propagation plot and the Jacobian's singular values, on the first training points."""
        for name, net in self.models.items():
            if self.status[name] != "ok":
                continue
            x = self.x_train[:signal_points(net, self.x_train)]
            self.record.add_rows("signal.csv", signal_rows(net, x, self.step, name))
            self.record.add_rows("jacobian.csv", jacobian_rows(net, x, self.step, name))

    def block_lens(self) -> None:
        """The head read at every block of the last stage, on the evaluation's training points
        (resnet_core.analysis.lens): its last block is the model's own training error."""
        x, y = self.eval_sets["train"]
        for name, net in self.models.items():
            if self.status[name] == "ok":
                self.record.add_rows("lens.csv", lens_rows(net, x, y, self.step, name))

    def lesion_study(self) -> None:
        """Every model's training error with each block deleted in turn (resnet_core.analysis.paths.lesion)."""
        self.analyst.lesion_study(self)

    def lesion_here(self, share: Callable[[str, LesionStudy], list[float]] | None = None) -> None:
        """The lesion study computed here; ``share(model, study)``, where given, computes the parts
        of each model's study (a ``SecondCore`` splits them with its process)."""
        x, y = self.eval_sets["train"]
        rows = []
        for name, net in self.models.items():
            if self.status[name] == "ok":
                rows += lesion_rows(net, x, y, name, None if share is None else functools.partial(share, name))
        self.record.set_lesion(rows)

    def call(self, method: str, **kwargs) -> None:
        """Run one of the analyses that record into the run (the same call a worker process takes)."""
        getattr(self, method)(**kwargs)

    def close(self, wait_s: float = 2.0) -> None:
        """Ends the analyst's process, if it has one (at once with ``wait_s=0``: work under way is
        dropped); here so every trainer can be closed alike."""
        self.analyst.close(wait_s)

    def __enter__(self) -> "LockstepTrainer":
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(0.0 if kind is not None else 2.0)  # a run that stopped (Ctrl-C) does not wait

    def run(self, steps: int | None = None, on_step=None) -> RunRecord:
        """Train to the settings' step count (or ``steps`` more), calling ``on_step(self)`` after each.
        Between steps, a job sharing its worker process may be paused (``slicing.checkpoint``)."""
        target = self.settings.steps if steps is None else min(self.settings.steps, self.step + steps)
        while self.step < target and not self.done:
            self.train_step()
            if on_step is not None:
                on_step(self)
            checkpoint()
        return self.record
