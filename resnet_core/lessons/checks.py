"""One check per lesson: a function of the run's own tables that says whether the claim showed.

Each check casts the run's models in the parts its claim needs (deepest plain net, its residual
twin, ...) by their names, so a teacher who changes depths still gets an honest verdict, and
a run without the needed models gets "this run cannot show it" rather than a guess.
Thresholds are deliberately coarse (5 points of error, a factor of 1000 in gradient): a claim
is "shown" only when the effect is plain to see on the chart beside it.
"""
from __future__ import annotations

import math

import numpy as np

from resnet_core.lessons.evidence import (NO_TWINS, NOT_SHOWN, NOT_YET, SHOWN, RunView, Verdict, by_step, cannot, decide, pct, points,
                              ratio_text)
from resnet_core.analysis.paths import summary_from_rows  # the same summary the paths panel shows
from resnet_core.records import RunRecord

MARGIN = 0.05          # a gap in training error the class can see: 5 percentage points
TOLERANCE = 0.02       # "as well as": within 2 points
VANISHED = 1e-3        # first-layer gradient below a thousandth of the last layer's
GROWS = 2.0            # with BN: the first layer's gradient at least twice the last layer's
SMALL_BRANCH = 0.5     # ||F(x)|| / ||x|| below a half: the skip carries most of the signal
LESION_HARMLESS = 0.05 # deleting one block of the residual net: median cost under 5 points
LESION_CATASTROPHE = 0.20  # deleting one layer group of the plain net: median cost over 20 points


# ---- 1. degradation -----------------------------------------------------------------------------
def degradation(record: RunRecord) -> Verdict:
    v = RunView(record)
    plain = v.pick("plain")
    if len(plain) < 2 or v.depth(plain[0]) == v.depth(plain[-1]):
        return cannot("it has no plain net deeper than another one",
                      "Train two plain nets of different depth, e.g. plain-20 and plain-56 (the lesson's settings).")
    deep, shallow = plain[0], plain[-1]
    e_deep, e_shallow = v.late_error(deep), v.late_error(shallow)
    gap = e_deep - e_shallow
    summary = (f"The {v.depth(deep)}-layer plain net is {points(gap)} {'worse' if gap >= 0 else 'better'} than the "
               f"{v.depth(shallow)}-layer one ({pct(e_deep)} against {pct(e_shallow)} training error)")
    needs = [deep, shallow]
    twin = v.same_depth([deep], v.pick("resnet"))
    if twin:
        e_res = v.late_error(twin[1])
        summary += (f"; the {v.depth(deep)}-layer residual net is {points(e_deep - e_res)} "
                    f"{'better' if e_res <= e_deep else 'worse'} ({pct(e_res)})")
    details = [f"Training error: the mean over the evaluations of {v.late_window()}, the last quarter of the run so far."]
    t_deep, t_shallow = v.late_error(deep, "test_error"), v.late_error(shallow, "test_error")
    if gap >= MARGIN:
        details.append(f"It is the training error itself that is higher (test error: {pct(t_deep)} against "
                       f"{pct(t_shallow)}): the deeper net fits its own training data worse, so this is not overfitting.")
    else:
        details.append(f"The claim needs the deeper plain net at least {points(MARGIN)} worse in training error.")
    return decide(v, gap >= MARGIN, summary + ".", details, needs=needs)


# ---- 2. residual learning -----------------------------------------------------------------------
def residual_learning(record: RunRecord) -> Verdict:
    v = RunView(record)
    pair = v.twins()
    if pair is None:
        return cannot(NO_TWINS, "Train a plain net and its residual twin, e.g. plain-56 and resnet-56.")
    res, plain = pair
    depth = v.depth(res)
    e_res, e_plain = v.late_error(res), v.late_error(plain)
    gain = e_plain - e_res
    summary = (f"With shortcuts the {depth}-layer net reaches {pct(e_res)} training error, {points(gain)} "
               f"{'better' if gain >= 0 else 'worse'} than its plain twin ({pct(e_plain)})")
    holds = gain >= MARGIN
    details = [f"Training error: the mean over the evaluations of {v.late_window()}, the last quarter of the run so far."]
    shallower = [m for m in v.models if m in v.specs() and v.depth(m) < depth and v.diverged_at(m) is None]
    if shallower:
        best = min(shallower, key=v.late_error)
        e_best = v.late_error(best)
        if e_res <= e_best:
            summary += f", and better than every shallower net in the run (best: {best}, {pct(e_best)})"
        else:
            summary += f", {points(e_res - e_best)} behind the best shallower net ({best}, {pct(e_best)})"
        holds = holds and e_res <= e_best + TOLERANCE
        details.append(f"'Trains well' here means: no shallower net in the run is more than {points(TOLERANCE)} "
                       "better, so depth no longer hurts.")
    if gain < MARGIN:
        details.append(f"The claim needs the residual net at least {points(MARGIN)} better than its plain twin.")
    return decide(v, holds, summary + ".", details, needs=[res, plain])


# ---- 3. is it vanishing gradients? ------------------------------------------------------------------
def _gradient_ratios(v: RunView, model: str) -> tuple[float, float]:
    """|grad| at the first hidden layer / at the last hidden layer: (at the first snapshot, the
    initialisation; median over every snapshot so far)."""
    _, values = v.record.layer_matrix(model, "grad_norm")
    if not len(values) or values.shape[1] < 4:
        return math.nan, math.nan
    first, last = values[:, 1], values[:, -2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(last > 0, first / last, np.nan)
    median = float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else math.nan
    return float(ratio[0]), median


def vanishing_gradients(record: RunRecord) -> Verdict:
    v = RunView(record)
    no_bn, with_bn = v.pick("plain", norm="none"), v.pick("plain", norm="batch")
    pair = v.same_depth(no_bn, with_bn)
    if pair is None or v.depth(with_bn[-1]) >= v.depth(pair[1]):
        return cannot("it needs a deep plain net without BatchNorm, its twin with BatchNorm and a shallower "
                      "plain net with BatchNorm",
                      "The lesson's settings: plain-20, plain-56 and plain-56-nobn (-nobn: this model without BatchNorm).")
    without, deep = pair
    shallow = with_bn[-1]
    _, median_without = _gradient_ratios(v, without)
    start_deep, median_deep = _gradient_ratios(v, deep)
    if not (math.isfinite(median_without) and math.isfinite(start_deep)):
        return Verdict(NOT_YET, "Waiting for the first gradient measurements.", [])
    e_deep, e_shallow = v.late_error(deep), v.late_error(shallow)
    gap = e_deep - e_shallow
    d = v.depth(deep)
    summary = (f"Without BatchNorm the {d}-layer plain net's first layer gets {ratio_text(median_without)} times the "
               f"gradient its last layer gets{': nothing arrives' if median_without == 0 else ''}. "
               f"With BatchNorm it starts at {ratio_text(start_deep)} times the last "
               f"layer's and stays at a median {ratio_text(median_deep)}, yet that net is {points(gap)} "
               f"{'worse' if gap >= 0 else 'better'} than the {v.depth(shallow)}-layer one ({pct(e_deep)} against "
               f"{pct(e_shallow)} training error).")
    details = ["Gradient ratio: |gradient| at the first hidden layer over that at the last hidden layer (the heatmap's "
               "two edges), at step 0 and as a median over every snapshot so far."]
    parts = {f"vanished without BatchNorm (median below {VANISHED:g})": median_without <= VANISHED,
             f"with BatchNorm it grows toward the input at initialisation (at least {GROWS:g}x)": start_deep >= GROWS,
             f"and does not vanish during training (median above {VANISHED:g})": median_deep > VANISHED,
             f"yet the deep BatchNorm net trains at least {points(MARGIN)} worse": gap >= MARGIN}
    details += [f"{'✓' if ok else '✗'} {what}" for what, ok in parts.items()]
    details.append(f"Training error: the mean over the evaluations of {v.late_window()}.")
    return decide(v, all(parts.values()), summary, details, needs=[deep, shallow, without])


# ---- 4. identity mappings -------------------------------------------------------------------------
def identity_mappings(record: RunRecord) -> Verdict:
    v = RunView(record)
    pair = v.twins()
    if pair is None:
        return cannot(NO_TWINS, "The lesson's settings: plain-56 and resnet-56 with init = zero.")
    res, plain = pair
    steps, ratios = v.record.layer_matrix(res, "branch_ratio")
    if not len(steps):
        return Verdict(NOT_YET, "Waiting for the first layer measurements.", [])
    start = float(np.nanmax(ratios[0])) if np.isfinite(ratios[0]).any() else math.nan
    median = np.nanmedian(np.where(np.isfinite(ratios), ratios, np.nan), axis=1)
    largest = float(np.nanmax(median))
    late_since = int(v.step * 0.75)
    resp_res = _mean_response(v, res, late_since)
    resp_plain = _mean_response(v, plain, late_since)
    d = v.depth(res)
    starts_as_identity = math.isfinite(start) and start <= 1e-6
    summary = (f"At step {int(steps[0])} the largest ‖F(x)‖/‖x‖ of the {d}-layer residual net is {ratio_text(start)}"
               + (", so it starts as its stem and head alone" if starts_as_identity else ": its branches do not start at zero")
               + f"; since then the median block's ratio has stayed at or "
               f"below {largest:.2f}, and its layer responses (std {resp_res:.2f}) are "
               f"{'smaller' if resp_res < resp_plain else 'not smaller'} than its plain twin's ({resp_plain:.2f}).")
    parts = {"every branch starts at zero (ratio at most 1e-6)": starts_as_identity,
             f"the median ‖F(x)‖/‖x‖ stays below {SMALL_BRANCH:g}": largest < SMALL_BRANCH,
             "layer responses smaller than the plain net's (He et al. 2015, Fig. 7)": resp_res < resp_plain}
    details = [f"{'✓' if ok else '✗'} {what}" for what, ok in parts.items()]
    details.append(f"Responses: std of each block layer's output (after BN, before the addition), averaged over the "
                   f"layers and the snapshots from step {late_since} on.")
    if not starts_as_identity:
        details.append("Branches start at zero only with init = zero (the lesson's setting).")
    return decide(v, all(parts.values()), summary, details, needs=[res, plain])


def _mean_response(v: RunView, model: str, since: int) -> float:
    values = by_step(v.record.layer_matrix(model, "act_std"), since=since)
    if not len(values) or values.shape[1] < 3:
        return math.nan
    return float(np.nanmean(values[:, 1:-1]))  # block layers only: not the stem, not the head


# ---- 5. two kinds of block --------------------------------------------------------------------------
_SHORTCUT_WORDS = {
    "pad": "identity shortcuts within a stage and zero-padded identities (option A, no parameters) where the width doubles",
    "identity": "identity shortcuts within a stage and a projection (a linear map, option B) where the width doubles",
    "projection": "a projection on every block (option C)",
}


def two_kinds_of_block(record: RunRecord) -> Verdict:
    v = RunView(record)
    arch = v.settings.get("arch", "mlp")
    stages = 3 if arch == "cnn" else int(v.settings.get("stages", 1))
    if stages < 2:
        return cannot("all its blocks keep one width (stages = 1), so no block changes shape",
                      "Set stages to 2 or more; the lesson uses 3 (widths 16, 32, 64, as in the paper's CIFAR nets).")
    pair = v.twins()
    if pair is None:
        return cannot(NO_TWINS, "The lesson's settings: plain-56 and resnet-56 with stages = 3.")
    res, plain = pair
    e_res, e_plain = v.late_error(res), v.late_error(plain)
    gain = e_plain - e_res
    width = int(v.settings.get("width", 0))
    widths = ", ".join(str(width * 2**i) for i in range(stages))
    shortcut = v.settings.get("shortcut", "identity")
    summary = (f"With {stages} stages of widths {widths}, the {v.depth(res)}-layer residual net reaches {pct(e_res)} "
               f"training error, {points(gain)} {'better' if gain >= 0 else 'worse'} than its plain twin ({pct(e_plain)}).")
    n_res = v.model_info.get(res, {}).get("parameters")
    n_plain = v.model_info.get(plain, {}).get("parameters")
    details = [f"Its blocks: {_SHORTCUT_WORDS.get(shortcut, shortcut)}."]
    if n_res is not None and n_plain is not None:
        extra = n_res - n_plain
        details.append(f"Parameters: {n_res:,} against the plain twin's {n_plain:,}"
                       + (" — the same: the shortcuts add nothing to learn." if extra == 0
                          else f" — the projections add {extra:,}."))
    details.append(f"Training error: the mean over the evaluations of {v.late_window()}.")
    return decide(v, gain >= MARGIN, summary, details, needs=[res, plain])


# ---- 6. why at least two layers per branch ------------------------------------------------------------
def two_layer_branches(record: RunRecord) -> Verdict:
    v = RunView(record)
    one = v.pick("resnet", branch_layers=1)
    more = v.pick("resnet", branch_layers=lambda n: n >= 2)
    plain = v.pick("plain")
    trio = next(((a, b, p) for a in one for b in more for p in plain
                 if v.depth(a) == v.depth(b) == v.depth(p)), None)
    if trio is None:
        return cannot("it needs, at one depth, a plain net and residual nets with one and with two layers per branch",
                      "The lesson's settings: plain-110, resnet-110-b1 and resnet-110 (-b1: one layer per branch).")
    r1, r2, p = trio
    e1, e2, ep = v.late_error(r1), v.late_error(r2), v.late_error(p)
    gain1, gain2 = ep - e1, ep - e2
    parts = {f"two-layer branches gain at least {points(2 * MARGIN)}": gain2 >= 2 * MARGIN,
             "one-layer branches gain at most half as much": gain1 <= gain2 / 2}
    summary = (f"Over the {v.depth(p)}-layer plain net ({pct(ep)} training error), shortcuts around two-layer branches "
               f"{_gain(gain2)} ({pct(e2)}); around one-layer branches{' only' if 0 <= gain1 <= gain2 / 2 else ''} "
               f"{_gain(gain1)} ({pct(e1)}).")
    details = [f"{'✓' if ok else '✗'} {what}" for what, ok in parts.items()]
    if v.effective(v.specs()[r1], "block") == "post":
        details.append("A one-layer branch makes y = ReLU(x + BN(Wx)): nearly one plain layer with weights I + W.")
    else:
        details.append("In the pre-activation layout a one-layer branch, y = x + W ReLU(BN(x)), is not nearly linear: "
                       "the paper's argument is about the original layout.")
    details.append(f"Training error: the mean over the evaluations of {v.late_window()}.")
    return decide(v, all(parts.values()), summary, details, needs=[r1, r2, p])


def _gain(gain: float) -> str:
    return f"gain {points(gain)}" if gain >= 0 else f"lose {points(gain)}"


# ---- 7. pre-activation ------------------------------------------------------------------------------
def pre_activation(record: RunRecord) -> Verdict:
    v = RunView(record)
    pre_nets = v.pick("resnet", block="pre")
    layers = {n: v.effective(v.specs()[n], "branch_layers") for n in v.specs()}
    post_nets = [n for n in v.pick("resnet", block="post") if any(layers[n] == layers[p] for p in pre_nets)]
    pair = next(((a, b) for a in pre_nets for b in post_nets
                 if v.depth(a) == v.depth(b) and layers[a] == layers[b]), None)
    if pair is None:
        return cannot("it has no pre-activation and original residual nets of the same depth",
                      "The lesson's settings: resnet-302-post and resnet-302-pre.")
    pre, post = pair
    a_pre, a_post = v.mean_error(pre), v.mean_error(post)
    gap = a_post - a_pre
    summary = (f"Averaged over the run so far, the {v.depth(pre)}-layer pre-activation net's training error is "
               f"{pct(a_pre)} against the original's {pct(a_post)}: {points(gap)} "
               f"{'lower' if gap >= 0 else 'higher'}.")
    details = ["The average over every evaluation is the area under the training curve: lower means it got there faster."]
    for level in (0.2, 0.1):
        s_pre, s_post = v.first_step_below(pre, level), v.first_step_below(post, level)
        details.append(f"First at or below {level:.0%} training error: pre-activation at "
                       f"{'step ' + str(s_pre) if s_pre is not None else 'no step yet'}, the original at "
                       f"{'step ' + str(s_post) if s_post is not None else 'no step yet'}.")
    return decide(v, gap >= MARGIN, summary, details, needs=[pre, post])


# ---- 8. paths and lesions -----------------------------------------------------------------------------
def paths_and_lesions(record: RunRecord) -> Verdict:
    v = RunView(record)
    res, plain = v.pick("resnet"), v.pick("plain")
    if not res or not plain:
        return cannot("it needs a residual net (for its paths and lesions) and a plain net (to lesion beside it)",
                      "The lesson's settings: plain-20 and resnet-56.")
    res = res[0]
    for model in (res, *plain):
        if v.diverged_at(model) is not None:
            return Verdict(NOT_SHOWN, f"{model} diverged at step {v.diverged_at(model)}, so the run cannot show the claim.",
                           ["A lower learning rate (lr) usually cures it."])
    paths = v.record.paths_frame()
    paths = paths[paths["model"] == res]
    if not len(paths) and not int(v.settings.get("paths_every", 0) or 0):
        return cannot("it analyses no paths (paths_every = 0)",
                      "Set the path analysis to every 50 steps, the lesson's setting.")
    if not len(paths) or paths["step"].max() < 0.5 * v.target:
        return Verdict(NOT_YET, f"Training: step {v.step} of {v.target}; the path analysis is judged from step "
                                f"{math.ceil(0.5 * v.target)} on.", ["Paths are analysed every paths_every steps."])
    at = int(paths["step"].max())
    s = summary_from_rows(paths[paths["step"] == at])
    lesion = v.record.lesion_frame()
    cost = {m: _lesion_cost(lesion, m) for m in (res, *plain)}
    plain_done = [m for m in plain if math.isfinite(cost[m])]
    if not math.isfinite(cost[res]) or not plain_done:
        return Verdict(NOT_YET, f"Paths so far: the gradient's mean path length is {s['mean_length']:.1f} blocks of "
                                f"{s['blocks']}; waiting for the lesion study.",
                       ["The lesion study deletes each block in turn from the trained nets: the command line takes it "
                        "when training ends; in the app, press Run lesion study under the paths panel."])
    other = min(plain_done, key=v.late_error)  # the plain net that learned most: lesioning an untrained one says nothing
    short = s["mean_length"] <= 0.5 * s["binomial_mean"]
    parts = {"the gradient's mean path length is at most half the mean length of all paths": short,
             f"deleting one block of the residual net costs under {points(LESION_HARMLESS)} (median)":
                 cost[res] < LESION_HARMLESS,
             f"deleting one layer pair of the plain net costs over {points(LESION_CATASTROPHE)} (median)":
                 cost[other] > LESION_CATASTROPHE}
    summary = (f"At step {at} the gradient of {res} ({s['blocks']} blocks, 2^{s['blocks']} paths) comes through paths "
               f"{s['mean_length']:.1f} blocks long on average, against {s['binomial_mean']:.1f} for a path drawn at "
               f"random (90 % of it through lengths {s['range_lo']}-{s['range_hi']}); deleting one of its blocks costs "
               f"a median {points(cost[res])} of training error, one of {other}'s {points(cost[other])}.")
    details = [f"{'✓' if ok else '✗'} {what}" for what, ok in parts.items()]
    details.append(f"Lesions: training error with one block deleted, minus the intact net's; {other} is the plain net "
                   f"that trained best here ({pct(v.late_error(other))}).")
    if math.isfinite(s["residual"]) and s["residual"] > 1e-3:
        details.append(f"The decomposition misses {s['residual']:.1e} of the gradient (lengths beyond the cutoff).")
    state = SHOWN if all(parts.values()) else NOT_SHOWN if v.finished else NOT_YET
    return Verdict(state, summary, details + [f"Judged at step {v.step} of {v.target}."])


def _lesion_cost(lesion, model: str) -> float:
    """Median increase in training error over the blocks that can be deleted one at a time."""
    rows = lesion[lesion["model"] == model]
    base = rows.loc[rows["block"] == -1, "train_error"].dropna()
    deleted = rows.loc[rows["block"] >= 0, "train_error"].dropna()  # NaN: a plain block that changes shape
    if not len(base) or not len(deleted):
        return math.nan
    return float(np.median(deleted.to_numpy(float) - float(base.iloc[0])))


# ---- 9. a thousand layers ----------------------------------------------------------------------------
def thousand_layers(record: RunRecord) -> Verdict:
    v = RunView(record)
    res = v.pick("resnet")
    if not res or v.depth(res[0]) < 1000:
        deepest = v.depth(res[0]) if res else 0
        return cannot(f"its deepest residual net has {deepest} layers, not a thousand",
                      "The lesson's settings: resnet-1002 with pre-activation blocks.")
    net = res[0]
    ev = v.evaluations(net)
    start = float(ev["train_error"].iloc[0]) if len(ev) else math.nan
    late = v.late_error(net)
    seconds = float(ev["wall_s"].iloc[-1]) if len(ev) else math.nan
    device = str(record.config.get("device", "cpu")).split(":")[0]
    summary = (f"The {v.depth(net)}-layer residual net went from {pct(start)} to {pct(late)} training error in "
               f"{v.step} steps, {seconds:.0f} s of training on this machine's {'GPU' if device == 'cuda' else 'CPU'}.")
    details = [f"Trained means: the error of {v.late_window()} is at most a quarter of where it started.",
               f"{len(v.record.layer_names.get(net, []))} weighted layers, "
               f"{v.model_info.get(net, {}).get('parameters', 0):,} parameters."]
    return decide(v, late <= start / 4, summary, details, needs=[net], min_evaluations=4)


__all__ = ["degradation", "residual_learning", "vanishing_gradients", "identity_mappings", "two_kinds_of_block",
           "two_layer_branches", "pre_activation", "paths_and_lesions", "thousand_layers", "SHOWN", "NOT_YET",
           "NOT_SHOWN", "Verdict"]
