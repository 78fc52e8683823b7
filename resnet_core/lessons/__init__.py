"""Guided lessons: one claim of the residual-network literature each, checked live on the run.

A lesson is data: a preset's settings (what to train), one paragraph citing the paper, a
question for the class, and a check, a function of the run's own tables (``lesson_checks``)
that says whether the claim showed on *this* run, with the figures. Nothing is scripted: a run
that does not show the claim gets "not shown", with why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import resnet_core.lessons.checks as checks
import resnet_core.lessons.checks_signal as signal_checks
from resnet_core.lessons.evidence import NOT_SHOWN, NOT_YET, SHOWN, Verdict
from resnet_core.presets import get_preset
from resnet_core.records import RunRecord
from resnet_core.settings import Settings, SettingsError


@dataclass(frozen=True)
class Lesson:
    name: str
    title: str
    text: str            # one paragraph: the claim and where it comes from
    question: str        # for the class, before pressing Train
    overrides: Mapping[str, Any]  # Settings fields, like a preset's
    check: Callable[[RunRecord], Verdict]
    after_training: tuple[str, ...] = field(default=())  # trainer analyses the check needs once training ends

    def settings(self, **changes: Any) -> Settings:
        return Settings.from_dict({**self.overrides, **changes})

    def judge(self, record: RunRecord | None) -> Verdict:
        """The verdict on a run so far (None: nothing trained yet)."""
        if record is None or not len(record.metrics_frame()):
            return Verdict(NOT_YET, "Press Train: the verdict appears as the run goes.", [])
        return self.check(record)


def _preset(name: str, **extra: Any) -> dict[str, Any]:
    return {**get_preset(name).overrides, **extra}


_LESSONS = [
    Lesson(
        "degradation", "1. Degradation: deeper plain nets train worse",
        "He et al. (2015, 'Deep Residual Learning for Image Recognition', Fig. 1) found that a 56-layer plain "
        "network has higher error than a 20-layer one on CIFAR-10, and not only on the test set: its training "
        "error is higher too. So it is not overfitting; the deeper net is simply harder to optimise, even though it "
        "could copy the shallow net and set its extra layers to the identity. Here a 20- and a 56-layer plain net "
        "and a 56-layer residual net learn to separate three interleaved spirals, on the same batches in lockstep.",
        "If the deeper net could always imitate the shallower one, why would its training error ever be higher?",
        _preset("degradation"), checks.degradation),
    Lesson(
        "residual-learning", "2. Residual learning: y = F(x) + x",
        "Instead of asking a stack of layers to fit a mapping H(x), a residual block fits F(x) = H(x) - x and adds "
        "x back through a shortcut: y = F(x) + x (He et al. 2015, Eq. 1). The identity is then the easy default "
        "(F = 0), and the very same 56 layers, with nothing but the shortcuts added and the same initial weights, "
        "train as well as the shallow nets. Fig. 6 of the paper shows plain-20/56 beside ResNet-20/56; so does this run.",
        "The residual net has exactly the same layers and weights as its plain twin. What changed?",
        _preset("resnet-vs-plain"), checks.residual_learning),
    Lesson(
        "vanishing-gradients", "3. Is it vanishing gradients?",
        "The classic explanation of why deep nets are hard to train is that gradients vanish on the way back to "
        "the first layers. Without BatchNorm, and with PyTorch's default initialisation, that is exactly what "
        "happens to a 56-layer plain net. But He et al. (2015, Sec. 4.1) trained their plain nets with BatchNorm "
        "and checked that 'neither forward nor backward signals vanish'; in fact with BN the gradient grows toward "
        "the input (Yang et al. 2019). Watch the gradient heatmap: the deep BN net's gradients are healthy, yet it "
        "still trains worse than the 20-layer net.",
        "If the gradients reach the first layers, why does the deep plain net still not learn?",
        _preset("is-it-vanishing"), checks.vanishing_gradients),
    Lesson(
        "identity-mappings", "4. Identity mappings: starting as the identity",
        "If the last BatchNorm scale of every residual branch starts at zero (Goyal et al. 2017; Fixup, Zhang et "
        "al. 2019), every block starts as the identity and the 56-layer residual net starts as its stem and head "
        "alone. Training then grows each branch only as far as it helps: the ratio ‖F(x)‖/‖x‖ stays small, and the "
        "layers' responses are smaller than in the plain net (He et al. 2015, Fig. 7): residual functions are close "
        "to zero, small corrections to the identity (He et al. 2016, 'Identity Mappings in Deep Residual Networks').",
        "A block that does nothing is easy to learn here and hard in a plain net. Why?",
        _preset("identity"), checks.identity_mappings),
    Lesson(
        "two-kinds-of-block", "5. Two kinds of block: when the shape changes",
        "Where a block's input and output have the same shape the shortcut is the identity. Where the width changes "
        "it cannot be: He et al. (2015, Sec. 3.3) either pad the identity with zeros (option A, no parameters) or "
        "project with a 1x1 convolution, here a linear map (option B); option C projects everywhere. This net has "
        "three stages of widths 16, 32 and 64, like the paper's CIFAR nets, with option A: the residual net has "
        "exactly the plain net's parameters. Switch the shortcut to identity (B) or projection (C) to compare.",
        "Where the width doubles, half of the new features get nothing from the shortcut. Does it matter?",
        _preset("changing-width"), checks.two_kinds_of_block),
    Lesson(
        "two-layer-branches", "6. Why at least two layers per branch",
        "He et al. (2015, Sec. 3.1) use two or three weight layers in each residual branch: 'if F has only a single "
        "layer, Eq. (1) is similar to a linear layer: y = W1 x + x, for which we have not observed advantages'. With "
        "one layer, y = ReLU(x + BN(Wx)) is nearly one plain layer with weights I + W. Here three 110-layer nets "
        "train side by side: plain, residual with one layer per branch (resnet-110-b1, 108 blocks) and residual with "
        "two (54 blocks); all have the same number of weighted layers.",
        "The one-layer version has twice as many shortcuts. Why would it help less?",
        _preset("branch-layers"), checks.two_layer_branches),
    Lesson(
        "pre-activation", "7. Pre-activation at a few hundred layers",
        "In the original block the ReLU comes after the addition, so even the shortcut path passes through a "
        "nonlinearity at every block. He et al. (2016, 'Identity Mappings in Deep Residual Networks') move BN and "
        "ReLU before the weights (full pre-activation) so that nothing follows the addition and x_L = x_l + sum F: "
        "the signal and the gradient travel the shortcuts untouched. Their 1001-layer original net's loss fell "
        "slowly at first; the pre-activation one converged faster (CIFAR-10 error 7.61 % against 4.92 %). Here two "
        "302-layer nets compare the two layouts.",
        "Both nets have shortcuts. What can still get in the way of the signal on a 150-block path?",
        _preset("preact-deep", steps=150), checks.pre_activation),
    Lesson(
        "paths", "8. Paths: residual nets as ensembles of short paths",
        "Unrolled, a net of n residual blocks is a sum over 2^n paths, one per choice of shortcut or branch at each "
        "block; most paths are about n/2 blocks long. Veit et al. (2016, 'Residual Networks Behave Like Ensembles of "
        "Relatively Shallow Networks') found that the gradient comes almost only from short paths, and that deleting "
        "one block of a trained ResNet barely hurts, while deleting a layer of a plain net is catastrophic. The path "
        "panel splits the gradient exactly by path length; when training ends, each block is deleted in turn.",
        "If most of the gradient uses only a few blocks, is the 56-layer net really 56 layers deep?",
        _preset("paths"), checks.paths_and_lesions, after_training=("lesion_study",)),
    Lesson(
        "thousand-layers", "9. A thousand layers on a laptop",
        "He et al. (2016, 'Identity Mappings in Deep Residual Networks') trained a 1001-layer pre-activation ResNet "
        "on CIFAR-10 to 4.62 % error. Here a 1002-layer pre-activation residual net (500 two-layer blocks) trains "
        "on this very machine; the verdict says how far it got and how many seconds it took. The identity shortcuts "
        "carry the signal and the gradient through all 500 blocks.",
        "What would you expect of a 1002-layer plain net, and why?",
        _preset("thousand-layers"), checks.thousand_layers),
    Lesson(
        "need-batchnorm", "10. Do we need BatchNorm?",
        "Without normalisation and with He init, every residual block adds a branch about as large as its input, "
        "so the stream's variance doubles at every block and a 110-layer net (54 blocks) blows up at the start "
        "(Zhang et al. 2019; De & Smith 2020). BatchNorm hides this by keeping each branch at unit variance, which "
        "biases every block toward the identity. Two initialisations make each block the identity without it: "
        "SkipInit (De & Smith 2020) ends each branch with a learnable scalar α = 0, y = x + α·F(x); Fixup (Zhang, "
        "Dauphin & Ma 2019) zeroes the last layer of each branch and the head, scales the other branch layers by "
        "L^(-1/(2m-2)) and adds scalar biases and a multiplier. Here four resnet-110s train on the same batches: "
        "with BatchNorm, and without it at He, SkipInit and Fixup.",
        "BatchNorm was patented. If a net could not use it, what would have to start small instead?",
        _preset("no-bn-deep"), signal_checks.need_batchnorm),
    Lesson(
        "signal", "11. What the + x does to the signal",
        "Brock, De & Smith (2021) measure, block by block on one batch at initialisation, the residual stream's "
        "average squared channel mean and channel variance and the variance of each branch's output. With BatchNorm "
        "every branch adds about one unit of variance, so the stream grows linearly; without it, at He init, it "
        "doubles at every block; at SkipInit it stays flat. The Jacobian of the whole block stack tells the same "
        "story for the gradient (dynamical isometry: Saxe et al. 2014; Pennington et al. 2017): where its singular "
        "values sit near 1, the gradient neither explodes nor vanishes. Here four 56-layer pre-activation nets: "
        "plain, residual with BatchNorm, and residual without it at He init and at SkipInit.",
        "Adding x at every block keeps the signal; what does adding F(x) at every block do to its size?",
        _preset("signal"), signal_checks.signal),
    Lesson(
        "blocks-refine", "12. Blocks refine their answer",
        "Jastrzębski et al. (2018, 'Residual connections encourage iterative inference') applied a ResNet's final "
        "classifier to the output of every block: the loss falls gradually across the blocks, the answer forms "
        "early and later blocks refine it, which is why deleting a late block barely hurts (Veit et al. 2016). The "
        "transformer-era version is the 'logit lens'. Here the trained head reads every block of a 56-layer "
        "residual net and of its plain twin; the lesion study runs when training ends.",
        "If a block only nudges the answer, what should happen when you delete it?",
        _preset("blocks-refine"), signal_checks.blocks_refine, after_training=("lesion_study",)),
]

LESSONS: dict[str, Lesson] = {lesson.name: lesson for lesson in _LESSONS}


def get_lesson(name: str) -> Lesson:
    try:
        return LESSONS[name]
    except KeyError:
        raise SettingsError(f"unknown lesson {name!r}; choose one of {', '.join(LESSONS)}") from None


__all__ = ["LESSONS", "Lesson", "Verdict", "get_lesson", "SHOWN", "NOT_YET", "NOT_SHOWN"]
