"""The seeds of one sweep point (family, depth) trained as one: ``StackedTrainer`` trains S members
that differ only in their seed (so in their initial weights and their batch order) through one
``StackedMLP``, one kernel call per layer for all of them, and one fused optimizer step over the
stacked tensors (elementwise, so each member's update is its own).

Each member's numbers are those of training it alone with ``LockstepTrainer`` (as a sweep's
run of one seed does): the same initial weights (``build_model`` with the member's seed), the same
batches (``BatchStream`` with its seed), the same BN calibration and evaluation (each member's own
``Net``, whose tensors are the stack's), and the same divergence rule: a member whose
loss turns NaN or infinite is marked diverged at that step and frozen (its weights and BN
statistics no longer change) while the others go on. tests/test_stacked_sweep.py checks this
bit for bit on every MLP block kind.

The data must not depend on the seed: a sweep's seeds share the settings' ``dataset_args``
(``data_seed`` included), so the members share one data set.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from resnet_core.nets.mlp_stacked import StackedMLP, stackable
from resnet_core.nets.models import Net, build_model
from resnet_core.records import run_finished
from resnet_core.settings import Settings
from resnet_core.sizing import budget
from resnet_core.training.lockstep import EVAL_LIMIT, BatchStream, check_fits, make_optimizer, resolve_device
from resnet_core.training.probes import calibrate_batch_norm, evaluate
from resnet_core.training.tensors import Dataset, load_dataset


# Floats a member's slice must be a multiple of to take the same path through the fused optimizer
# kernels as its own tensor would: measured 8 here (AVX512 machine, 8-float vectors); 32 leaves room
# for 16-float vectors and an unroll, and keeps every BN vector of width 32 in the stack.
VECTOR_ELEMENTS = 32


def can_stack(settings: Settings) -> bool:
    """Whether a run of these settings can be trained stacked: an MLP of one model whose blocks
    ``StackedMLP`` knows (no zero-padded shortcuts), on the CPU (on a GPU autograd's BN is cuDNN's,
    so the stacked kernels would not give each member its own run's numbers bit for bit)."""
    s = settings.checked()
    if s.arch != "mlp" or len(s.models) != 1 or resolve_device(s.device).type != "cpu":
        return False
    spec = s.model_specs[0]
    return stackable(build_model(spec, s, (2,), 2))


def group_fits(settings: Settings, data: Dataset, members: int) -> bool:
    """Whether ``members`` runs of these settings fit one run's memory budget together (a worker
    limits itself to about one run's). A run that does not fit alone raises, as it would alone."""
    estimate = budget.check_fits(settings.checked(), budget.shape_of(data))
    return estimate.total * members <= budget.run_memory_budget()


class StackedTrainer:
    """``settings`` names one MLP; ``seeds`` the members. ``metrics[i]`` holds member i's rows of
    metrics.csv (step, model, train_loss, train_error, test_error, wall_s, status), as
    ``LockstepTrainer.record`` would hold them; ``wall_s`` there is the group's step time so far."""

    def __init__(self, settings: Settings, seeds: list[int], data: Dataset | None = None):
        self.settings = settings.checked()
        self.seeds = list(seeds)
        self.device = resolve_device(self.settings.device)
        self.data = data or load_dataset(self.settings.dataset, self.settings.dataset_args)
        check_fits(self.settings, self.data)  # each member as a run of its own
        spec = self.settings.model_specs[0]
        self.name = spec.name
        d = self.data
        self.x_train, self.y_train = d.x_train.to(self.device), d.y_train.to(self.device)
        self.eval_sets = {
            "train": (self.x_train[:EVAL_LIMIT], self.y_train[:EVAL_LIMIT]),
            "test": (d.x_test[:EVAL_LIMIT].to(self.device), d.y_test[:EVAL_LIMIT].to(self.device)),
        }
        self.nets: list[Net] = []
        for seed in self.seeds:
            net = build_model(spec, self.settings.with_changes(seed=seed), d.input_shape, d.n_classes).to(self.device)
            calibrate_batch_norm(net, self.eval_sets["train"][0][:1024])
            self.nets.append(net)
        self.model = StackedMLP(self.nets)
        self.optimizer = make_optimizer(self.settings, self._optimized())
        self.batches = [BatchStream(len(d.x_train), self.settings.batch_size, seed) for seed in self.seeds]
        self.status = ["ok"] * len(self.seeds)
        self.diverged_at: dict[int, int] = {}
        self._frozen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # member -> (view, saved)
        self.metrics: list[list[dict[str, Any]]] = [[] for _ in self.seeds]
        self.step = 0
        self.wall_s = 0.0
        self.evaluate_all()

    @property
    def done(self) -> bool:
        return run_finished(self.step, self.settings.steps, dict(enumerate(self.status)))

    def train_step(self) -> None:
        s = self.settings
        idx = torch.stack([b.next() for b in self.batches]).to(self.device)  # (S, B): each its own order
        started = time.perf_counter()
        for p in self.model.parameters:  # not all of them are the optimizer's own (see _optimized)
            p.grad = None
        losses = self.model.losses(self.x_train[idx], self.y_train[idx])
        losses.sum().backward()  # each member's gradient is its own loss's: the sum passes 1.0 to each
        for i, loss in enumerate(losses.tolist()):
            if self.status[i] == "ok" and not math.isfinite(loss):
                self._diverge(i)
        if any(st == "ok" for st in self.status):
            self._split_grads()
            self.optimizer.step()
        self._restore_frozen()
        self.wall_s += time.perf_counter() - started
        self.step += 1
        if self.step % s.eval_every == 0 or self.step == s.steps:
            self.evaluate_all()

    # ---- the optimizer: elementwise over the stack, with each member's elements on the same path
    def _optimized(self) -> list[torch.Tensor]:
        """The tensors the fused optimizer updates. Its kernels take a vectorised path for whole
        vectors of a tensor and a scalar one for the tail, which round differently (a momentum
        update with and without FMA): a stacked tensor whose members' slices are not a whole number
        of vectors (the head's bias: 3 classes) would give a member's tail elements the vector
        path. Those are given to the optimizer as one view per member, each its own tensor, as
        in a separate run; the rest whole."""
        size = len(self.seeds)
        self._split: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        tensors = []
        for p in self.model.parameters:
            if (p.numel() // size) % VECTOR_ELEMENTS == 0:
                tensors.append(p)
            else:
                views = list(p.detach().view(size, -1).unbind(0))
                self._split.append((p, views))
                tensors += views
        return tensors

    def _split_grads(self) -> None:
        size = len(self.seeds)
        for p, views in self._split:
            for view, grad in zip(views, p.grad.view(size, -1).unbind(0)):
                view.grad = grad

    # ---- divergence: the member is left as it was, as a separate run leaves its diverged model
    def _member_tensors(self, i: int) -> list[torch.Tensor]:
        """Views of member i's slices of every stacked parameter and BN buffer."""
        out = []
        for t in self.model.parameters + self.model.buffers:
            out.append(t.detach()[i] if t.dim() > 1 else t.detach().view(len(self.seeds), -1)[i])
        return out

    def _diverge(self, i: int) -> None:
        self.status[i] = "diverged"
        self.diverged_at[i] = self.step
        # Its weights as they were before this step (as a separate run skips the update), its BN
        # statistics as this step's forward pass left them (as a separate run's forward did).
        self._frozen[i] = [(view, view.clone()) for view in self._member_tensors(i)]
        self.metrics[i].append({"step": self.step, "model": self.name, "train_loss": math.nan,
                                "train_error": math.nan, "test_error": math.nan,
                                "wall_s": round(self.wall_s, 4), "status": "diverged"})

    @torch.no_grad()
    def _restore_frozen(self) -> None:
        if self._frozen:
            pairs = [p for saved in self._frozen.values() for p in saved]
            torch._foreach_copy_([v for v, _ in pairs], [s for _, s in pairs])

    # ---- evaluation: each member's own Net (its tensors the stack's), as LockstepTrainer.evaluate_all
    # evaluates it. One stacked forward instead took 1.4-1.9x as long at 1600 points (arithmetic and
    # memory, not dispatch: the side-by-side BN copies of (S, 1600, 32) cost what the stack saved).
    def evaluate_all(self) -> None:
        for i, net in enumerate(self.nets):
            if self.status[i] != "ok":
                continue
            train_loss, train_error = evaluate(net, *self.eval_sets["train"], batch_stats=True)
            _, test_error = evaluate(net, *self.eval_sets["test"])
            train_loss, train_error, test_error = (v if math.isfinite(train_loss) else math.nan
                                                   for v in (train_loss, train_error, test_error))
            self.metrics[i].append({"step": self.step, "model": self.name, "train_loss": train_loss,
                                    "train_error": train_error, "test_error": test_error,
                                    "wall_s": round(self.wall_s, 4), "status": "ok"})

    def run(self, on_step: Callable[["StackedTrainer"], None] | None = None) -> None:
        while not self.done:
            self.train_step()
            if on_step is not None:
                on_step(self)
