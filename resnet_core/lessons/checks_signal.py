"""The checks of the lessons on the signal through a residual stack (issue 21): do we need BatchNorm,
what the + x does to the signal, blocks that refine. Same rules as ``checks.py``: each check casts
the run's models by their names, reads the run's own tables and quotes the figures it judged by.
"""
from __future__ import annotations

import math

from resnet_core.lessons.checks import MARGIN
from resnet_core.lessons.evidence import NO_TWINS, NOT_YET, RunView, Verdict, cannot, decide, pct, points
from resnet_core.records import RunRecord


def _chance(v: RunView) -> float:
    classes = int(v.record.config.get("dataset", {}).get("classes") or 2)
    return 1.0 - 1.0 / max(classes, 2)


# ---- 10. do we need BatchNorm? --------------------------------------------------------------------
def need_batchnorm(record: RunRecord) -> Verdict:
    """He init without normalisation fails at depth; SkipInit or Fixup trains without it; how close to BN."""
    v = RunView(record)
    bn = v.pick("resnet", norm="batch")
    he = v.pick("resnet", norm="none", init=lambda i: i in ("he", "default"))
    free = {init: v.pick("resnet", norm="none", init=init) for init in ("skipinit", "fixup")}
    free = {init: models[0] for init, models in free.items() if models}
    if not bn or not he or not free:
        return cannot("it needs a residual net with BatchNorm, one without it at He init, and one without it at "
                      "SkipInit or Fixup",
                      "The lesson's settings: resnet-110, resnet-110-nobn, resnet-110-nobn-skipinit and "
                      "resnet-110-nobn-fixup (-nobn: without BatchNorm).")
    bn, he = bn[0], he[0]
    chance = _chance(v)
    e_bn = v.late_error(bn)
    he_diverged = v.diverged_at(he)
    e_he = v.late_error(he)
    he_failed = he_diverged is not None or not math.isfinite(e_he) or e_he > chance - MARGIN
    he_text = (f"diverged at step {he_diverged}" if he_diverged is not None
               else f"reached {pct(e_he)} training error")
    trained, parts = [], []
    for init, model in free.items():
        e = v.late_error(model)
        at = v.diverged_at(model)
        if at is not None:
            parts.append(f"{init_name(init)} diverged at step {at}")
            continue
        ok = math.isfinite(e) and e <= chance - MARGIN
        trained += [init] if ok else []
        gap = e - e_bn
        parts.append(f"{init_name(init)} reached {pct(e)}, {points(gap)} {'behind' if gap >= 0 else 'ahead of'} "
                     f"BatchNorm" + ("" if ok else f" (not below chance, {pct(chance)}, by {points(MARGIN)})"))
    summary = (f"Without normalisation, He init {he_text}; " + "; ".join(parts)
               + f"; with BatchNorm the {v.depth(bn)}-layer net reached {pct(e_bn)}.")
    details = [f"Training error: the mean over the evaluations of {v.late_window()}, the last quarter of the run so far.",
               f"{'✓' if he_failed else '✗'} He init without normalisation fails (diverges, or stays within "
               f"{points(MARGIN)} of chance): each block adds a branch as large as the stream, whose "
               "variance doubles at every block (Zhang et al. 2019; De & Smith 2020).",
               f"{'✓' if trained else '✗'} a normalisation-free initialisation trains: its error at least "
               f"{points(MARGIN)} below chance ({pct(chance)}); each of its blocks starts as the identity."]
    return decide(v, he_failed and bool(trained), summary, details, needs=[bn, *free.values()])


def init_name(init: str) -> str:
    return {"skipinit": "SkipInit", "fixup": "Fixup"}.get(init, init)


# ---- 11. what the + x does to the signal ------------------------------------------------------------
EXPLODES = 1.5      # He init without normalisation: the stream's variance at least 1.5x per block at step 0
LINEAR = 1.3        # with BN: at most 1.3x per block (linear growth: 27 blocks give about 1.13x)
FLAT = 0.01         # SkipInit: within 1 % of 1x per block
ISOMETRY = 0.9      # SkipInit: at least 90 % of the Jacobian's singular values within a decade of 1
CLOSER = 0.2        # the residual stack's share at least 20 points above its plain twin's


def signal(record: RunRecord) -> Verdict:
    from resnet_core.analysis.signal import growth_per_block, isometry_share

    v = RunView(record)
    bn = v.pick("resnet", norm="batch", init=lambda i: i in ("he", "default"))
    he = v.pick("resnet", norm="none", init=lambda i: i in ("he", "default"))
    skip = v.pick("resnet", init="skipinit")
    twin = v.same_depth(bn, v.pick("plain", norm="batch"))
    if not (bn and he and skip and twin):
        return cannot("it needs a plain net and its residual twin with BatchNorm, a residual net without it at He "
                      "init and one at SkipInit",
                      "The lesson's settings: plain-56, resnet-56, resnet-56-nobn and resnet-56-nobn-skipinit.")
    signal_table, jacobian = record.table_frame("signal.csv"), record.table_frame("jacobian.csv")
    res, plain = twin
    he, skip = he[0], skip[0]
    growth = {m: growth_per_block(signal_table, m) for m in (res, he, skip)}
    share = {m: isometry_share(jacobian, m) for m in (res, plain, skip)}
    if any(math.isnan(g) for g in growth.values()) or any(math.isnan(s) for s in share.values()):
        return Verdict(NOT_YET, "Waiting for the signal and the Jacobian at step 0 (they are measured at step 0 and "
                                "every paths_every steps; set paths_every above 0).", [])
    summary = (f"At step 0 the stream's variance grows ×{growth[he]:.2f} per block without normalisation (He init), "
               f"×{growth[res]:.2f} with BatchNorm and ×{growth[skip]:.2f} at SkipInit; "
               f"{share[skip]:.0%} of SkipInit's Jacobian's singular values are within a decade of 1, "
               f"{share[res]:.0%} of {res}'s and {share[plain]:.0%} of {plain}'s")
    parts = {f"He init without normalisation: at least ×{EXPLODES:g} per block (Var(x + F(x)) = 2 Var(x))":
             growth[he] >= EXPLODES,
             f"with BatchNorm: at most ×{LINEAR:g} per block (each branch adds about one unit: linear growth)":
             growth[res] <= LINEAR,
             f"at SkipInit: flat, within {FLAT:.0%} of ×1 (every block the identity)": abs(growth[skip] - 1) <= FLAT,
             f"at SkipInit: at least {ISOMETRY:.0%} of the singular values within a decade of 1 (an isometry)":
             share[skip] >= ISOMETRY,
             f"the residual stack keeps at least {points(CLOSER)} more of them near 1 than its plain twin":
             share[res] >= share[plain] + CLOSER}
    details = ["Growth: the geometric mean factor of the stream's average channel variance from the first block's "
               "output to the last, at step 0 (Brock, De & Smith 2021). Singular values: of ∂xₙ/∂x₀ at 16 probe "
               "points, medianed (Pennington et al. 2017)."]
    details += [f"{'✓' if ok else '✗'} {what}" for what, ok in parts.items()]
    return decide(v, all(parts.values()), summary + ".", details, min_fraction=0.0, min_evaluations=1,
                  needs=[res, plain, skip])


# ---- 12. blocks that refine -------------------------------------------------------------------------
def blocks_refine(record: RunRecord) -> Verdict:
    from resnet_core.analysis.lens import lens_at, middle_error

    v = RunView(record)
    twin = v.twins()
    if twin is None:
        return cannot(NO_TWINS, "The lesson's settings: plain-56 and resnet-56.")
    res, plain = twin
    lens = record.table_frame("lens.csv")
    if not (lens["model"] == res).any() or not (lens["model"] == plain).any():
        return Verdict(NOT_YET, "Waiting for the block lens (read at step 0 and every paths_every steps; set "
                                "paths_every above 0).", [])
    chance = _chance(v)
    mid_res, mid_plain = middle_error(lens, res), middle_error(lens, plain)
    last_res = float(lens_at(lens, res)["train_error"].iloc[-1])
    step = int(lens[lens["model"] == res]["step"].max())
    summary = (f"At step {step}, read at the middle block, {res} already gets {pct(mid_res)} training error "
               f"({pct(last_res)} at its last block), its plain twin {pct(mid_plain)} (chance: {pct(chance)})")
    parts = {f"the residual net's answer forms early: at least {points(MARGIN)} below chance at the middle block":
             mid_res <= chance - MARGIN,
             "and later blocks refine it: the last block no worse than the middle one": last_res <= mid_res,
             f"the plain net's middle block reads as chance (within {points(MARGIN)})": mid_plain >= chance - MARGIN}
    details = ["Block lens: the trained head (with its normalisation) applied to each block's output, on the "
               "training points (Jastrzębski et al. 2018)."]
    details += [f"{'✓' if ok else '✗'} {what}" for what, ok in parts.items()]
    return decide(v, all(parts.values()), summary + ".", details, needs=[res, plain])
