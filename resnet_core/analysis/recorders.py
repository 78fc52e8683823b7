"""What a training run records of its nets besides the error curves: the analyses a
``LockstepTrainer`` runs as step hooks, which the trainer itself never names.

Each recorder has a ``name`` (a worker may be asked to run it by that name, ``REMOTE_METHODS``),
says whether it is ``due`` at the trainer's current step, and records into the trainer's record
when called; one that is ``later`` may, at step 0, record after the first step is taken, on copies
of the nets as they were (``LockstepTrainer``'s ``answer_first``: a dashboard run's first step
comes first). ``standard()`` is what the app and the command line record: decision maps on 2D data; at the
path cadence the unrolled view of every residual net, the signal propagation plot with the
Jacobian's spectrum, and the block lens; and on request the lesion study and
the trained nets as files.
A run that needs only its error curves (a sweep's, a loss landscape's twins) passes none.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from resnet_core.analysis.paths.compute import analyse_paths, next_start_length, probe_points, rows_for_record
from resnet_core.analysis.lens.compute import lens_rows
from resnet_core.analysis.paths.lesion import lesion_rows
from resnet_core.analysis.signal.compute import jacobian_rows, signal_points, signal_rows
from resnet_core.nets import mlp_stack

if TYPE_CHECKING:
    from resnet_core.training.lockstep import LockstepTrainer

REGION_RESOLUTION = 48
REGION_EVERY = 3  # decision maps every third evaluation: each costs about one evaluation


def at_path_cadence(t: LockstepTrainer) -> bool:
    """At step 0, every ``paths_every`` steps and at the last step (never where paths_every is 0)."""
    s, k = t.settings, t.step
    return s.paths_every > 0 and (k % s.paths_every == 0 or k == s.steps)


class DecisionMaps:
    """For 2D data: each model's predicted class and confidence on a grid over the data."""

    name = "decision_regions"
    later = True  # at step 0 it may wait for the first step (LockstepTrainer's answer_first)

    def due(self, t: LockstepTrainer) -> bool:
        s, k = t.settings, t.step
        return t.evaluating() and not t.data.is_image and (k % (REGION_EVERY * s.eval_every) == 0 or k == s.steps)

    @torch.no_grad()
    def __call__(self, t: LockstepTrainer, resolution: int = REGION_RESOLUTION) -> None:
        x = t.data.x_train
        lo, hi = (x.min(0).values - 0.1).tolist(), (x.max(0).values + 0.1).tolist()
        gx, gy = torch.linspace(lo[0], hi[0], resolution), torch.linspace(lo[1], hi[1], resolution)
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2).to(t.device)
        for name, net in t.training_models():
            was = net.training
            net.eval()
            prob = torch.softmax(mlp_stack.forward(net, grid), 1)
            net.train(was)
            conf, cls = prob.max(1)
            t.record.set_regions(name, t.step, {
                "x": [lo[0], hi[0]], "y": [lo[1], hi[1]], "n": resolution,
                "classes": cls.cpu().tolist(), "confidence": [round(c, 3) for c in conf.cpu().tolist()]})


class UnrolledPaths:
    """The unrolled view of every residual model still training (``analysis.paths.compute``): the
    exact gradient through paths of each length on a fixed probe batch (the first training points),
    and Veit et al.'s sampled per-path norms beside it."""

    name = "path_analysis"
    later = True

    def __init__(self) -> None:
        self.cutoffs: dict[str, int] = {}  # each model's last cutoff: where the next analysis starts

    due = staticmethod(at_path_cadence)

    def __call__(self, t: LockstepTrainer) -> None:
        for name, net in t.training_models():
            if not net.residual:
                continue
            n = probe_points(net, t.x_train)
            exact, sampled = analyse_paths(net, t.x_train[:n], t.y_train[:n], start_length=self.cutoffs.get(name))
            self.cutoffs[name] = next_start_length(exact)
            t.record.add_paths(rows_for_record(exact, sampled, t.step, name))


class SignalPropagation:
    """What the + x does to the signal, for every model still training (``analysis.signal``): the
    signal propagation plot (Brock, De & Smith 2021) and the singular values of the block stack's
    Jacobian, on the first training points, at the path cadence."""

    name = "signal_analysis"
    later = True
    due = staticmethod(at_path_cadence)

    def __call__(self, t: LockstepTrainer) -> None:
        for name, net in t.training_models():
            x = t.x_train[:signal_points(net, t.x_train)]
            t.record.add_rows("signal.csv", signal_rows(net, x, t.step, name))
            t.record.add_rows("jacobian.csv", jacobian_rows(net, x, t.step, name))


class BlockLens:
    """The head read at every block of the last stage, on the evaluation's training points
    (``analysis.lens``; Jastrzębski et al. 2018): its last block is the model's own training error."""

    name = "block_lens"
    later = True
    due = staticmethod(at_path_cadence)

    def __call__(self, t: LockstepTrainer) -> None:
        x, y = t.eval_sets["train"]
        for name, net in t.training_models():
            t.record.add_rows("lens.csv", lens_rows(net, x, y, t.step, name))


class BlockLesions:
    """Every model's training error with each block deleted in turn (``analysis.paths.lesion``):
    on request only, once the nets are trained."""

    name = "lesion_study"

    def due(self, t: LockstepTrainer) -> bool:
        return False

    def __call__(self, t: LockstepTrainer) -> None:
        x, y = t.eval_sets["train"]
        t.record.set_lesion([row for name, net in t.training_models() for row in lesion_rows(net, x, y, name)])


class SavedNets:
    """On request: each model still training as ``folder/NAME.safetensors`` (``nets/export.py``),
    and beside them ``data.npz``, the points its training and test errors were measured on."""

    name = "save_models"

    def due(self, t: LockstepTrainer) -> bool:
        return False

    def __call__(self, t: LockstepTrainer, folder: str) -> None:
        from resnet_core.nets import export

        for _, net in t.training_models():
            export.save_model(net, folder, t.data.input_shape)
        export.save_data(folder, *t.eval_sets["train"], *t.eval_sets["test"])


def standard() -> list:
    """The recorders of a run the app shows or the command line writes, in the order they record
    at a step (the run folder's rows come in this order)."""
    return [DecisionMaps(), UnrolledPaths(), SignalPropagation(), BlockLens(), BlockLesions(), SavedNets()]
