"""The block lens beside the lesion study (in the "Unrolled paths" tab): the trained head read at
every block of the last stage (Jastrzębski et al. 2018). It reads only the run's record (lens.csv)."""
from __future__ import annotations

import math

import streamlit as st

import dashboard.charts.lens as charts_lens
from dashboard.panels.accessible import chart
from resnet_core.analysis.lens import lens_at, middle_error

CHART_CONFIG = {"displaylogo": False}


def render_lens_section(record, refresh: float | None) -> None:
    st.markdown("#### Block lens: read the answer at every block")
    st.fragment(run_every=refresh)(_lens_chart)(record)


def _lens_chart(record) -> None:
    lens = record.table_frame("lens.csv")
    if lens.empty:
        st.info("No block lens yet: it is read at step 0 and every *paths every* steps while training "
                "(set paths_every above 0).")
        return
    models = [m for m in record.models() if (lens["model"] == m).any()]
    classes = int(record.config.get("dataset", {}).get("classes") or 0)
    chance = 1 - 1 / classes if classes > 1 else None
    chart(charts_lens.lens_figure(lens, models, chance), key="paths_lens", config=CHART_CONFIG)
    middles = {m: middle_error(lens, m) for m in models}
    step = int(lens["step"].max())
    st.caption(
        "The trained head (with its normalisation) applied to each block's output, on the training points "
        "(the last stage's blocks, where the width is the head's): the error each block's representation already "
        "gives. Jastrzębski et al. (2018) found that in a residual net the answer forms early and later blocks "
        "refine it; in a plain net the middle blocks need not mean anything to the head. The last block is the "
        "model's own training error. "
        f"At step {step}, read at the middle block: "
        + "; ".join(f"{m} {_pct(e)} (last block {_pct(float(lens_at(lens, m)['train_error'].iloc[-1]))})"
                    for m, e in middles.items()) + ".")


def _pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{100 * x:.1f} %"
