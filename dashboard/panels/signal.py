"""The "Signal propagation" panel: what the + x does to the signal (Brock, De & Smith 2021) and to the
block stack's Jacobian (Saxe et al. 2014; Pennington, Schoenholz & Ganguli 2017). It reads only the
run's record (signal.csv, jacobian.csv), so a replayed run folder shows the same; while a run trains
it refreshes in a fragment."""
from __future__ import annotations

import math

import streamlit as st

import dashboard.charts.signal as charts_signal
from dashboard.panels.accessible import chart
from resnet_core.analysis.signal import growth_per_block, isometry_share

REFRESH_S = 2.5  # the analysis itself runs every paths_every steps; this only picks it up
CHART_CONFIG = {"displaylogo": False}


def render_signal_panel(record, live: bool) -> None:
    if record is None:
        st.info("Train, or load a run folder, to see how the signal travels through its blocks.")
        return
    st.fragment(run_every=REFRESH_S if live else None)(_signal_section)(record)


def _signal_section(record) -> None:
    models = record.models()
    signal, jacobian = record.table_frame("signal.csv"), record.table_frame("jacobian.csv")
    if signal.empty:
        st.info("No signal measurements yet: they are taken at step 0 and every *paths every* steps while "
                "training (set paths_every above 0).")
        return
    st.markdown("#### The signal, block by block")
    chart(charts_signal.signal_figure(signal, models), key="signal_plot", config=CHART_CONFIG)
    growth = {m: growth_per_block(signal, m) for m in models}
    st.markdown(
        "**What to look for** (Brock, De & Smith 2021, signal propagation plots). On a fixed probe batch (the first "
        "256 training points), after every block: the residual stream's average squared channel mean, its average "
        "channel variance, and the variance of the branch's output. Without normalisation and with He init, each "
        "block adds a branch about as large as its input, so the stream's variance doubles at every block "
        "(Zhang et al. 2019; De & Smith 2020). With BatchNorm each branch adds about one unit: the variance grows "
        "linearly. With SkipInit or Fixup every branch starts at zero: the variance is flat, each block the identity.")
    lines = [f"{m}: ×{_factor(g)} per block at step 0" for m, g in growth.items() if not math.isnan(g)]
    if lines:
        st.caption("Measured on this run, the stream's variance from the first block to the last: " + "; ".join(lines)
                   + ". A plain net's 'stream' is simply its activations after each layer group.")
    st.markdown("#### The Jacobian's singular values")
    if jacobian.empty:
        st.info("The Jacobian's spectrum is computed exactly for MLPs (width × width); this run has none.")
        return
    chart(charts_signal.jacobian_figure(jacobian, models), key="signal_jacobian", config=CHART_CONFIG)
    spread = {m: isometry_share(jacobian, m, int(jacobian[jacobian["model"] == m]["step"].max()))
              for m in models if (jacobian["model"] == m).any()}
    st.markdown(
        "**What to look for** (dynamical isometry: Saxe et al. 2014; Pennington, Schoenholz & Ganguli 2017). "
        "The singular values of ∂xₙ/∂x₀, the block stack's output over its input, at each of 16 probe points "
        "(BN fixed at the probe batch's statistics), medianed index by index. Where they all sit near 1 the "
        "gradient neither explodes nor vanishes in any direction. A residual stack near the identity keeps them "
        "there (Tarnowski et al. 2019); a deep plain ReLU stack spreads them over decades.")
    st.caption("Measured now, largest over smallest non-zero singular value: "
               + "; ".join(f"{m}: {_decades(d)}" for m, d in spread.items())
               + ". Zeros are directions a ReLU after the addition cuts off (original blocks).")


def _factor(g: float) -> str:
    return "∞" if math.isinf(g) else f"{g:.2f}"


def _decades(d: float) -> str:
    if math.isnan(d):
        return "—"
    return f"{d:.1f} decade{'s' if abs(d - 1) > 1e-9 else ''}"
