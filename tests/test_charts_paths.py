"""The unrolled-paths charts (pure builders, checked without a browser) and the panel (Streamlit AppTest)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

import dashboard.charts.paths as charts_paths
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import standard
from resnet_core.analysis.paths import path_counts
from resnet_core.records import RunRecord
from resnet_core.settings import Settings


def analysis_rows(n: int = 6, step: int = 0, model: str = "resnet-14", decay: float = 0.3, cutoff: int | None = None,
                  sampled: bool = True) -> pd.DataFrame:
    """An analysis as the record holds it: gradient per length falling like C(n, k) decay^k."""
    k = np.arange((n if cutoff is None else cutoff) + 1)
    counts = path_counts(n)[k]
    norm = counts * decay**k
    rows = pd.DataFrame({"step": step, "model": model, "length": k, "n_paths": counts, "grad_norm": norm,
                         "share": norm / norm.sum(), "residual": 3e-7})
    if sampled:
        rows["path_norm"] = decay**k
    return rows


def test_length_figure_puts_the_binomial_beside_the_gradient_and_marks_the_90_percent_range():
    rows = analysis_rows(n=10)
    fig = charts_paths.length_figure(rows, blocks=10)
    binomial, gradient, veit = fig.data
    assert binomial.type == "bar" and len(binomial.x) == 11
    assert sum(binomial.y) == pytest.approx(1.0, abs=1e-5) and np.argmax(binomial.y) == 5
    np.testing.assert_allclose(gradient.y, rows.share, rtol=1e-5)
    # per-path x count equals the exact norms here (no cancellation in this table), so the shares agree
    np.testing.assert_allclose(veit.y, rows.share, rtol=1e-5)
    shapes = fig.layout.shapes
    band = [s for s in shapes if s.type == "rect"][0]
    lo, hi = band.x0 + 0.5, band.x1 - 0.5
    assert rows.share[int(lo):int(hi) + 1].sum() >= 0.9 and hi < 5  # short paths, left of n/2
    lines = sorted(s.x0 for s in shapes if s.type == "line")
    mean = float((rows.length * rows.share).sum())
    assert lines == pytest.approx(sorted([5.0, mean]))
    assert any("90 %" in a.text for a in fig.layout.annotations)


def test_length_figure_without_sampled_norms_and_beyond_the_cutoff():
    rows = analysis_rows(n=40, cutoff=12, sampled=False)
    fig = charts_paths.length_figure(rows, blocks=40)
    assert len(fig.data) == 2  # no Veit trace without path_norm
    assert len(fig.data[0].x) == 41 and len(fig.data[1].x) == 13


def test_per_path_figure_shows_the_exponential_fall():
    assert charts_paths.per_path_figure(analysis_rows(sampled=False)) is None
    fig = charts_paths.per_path_figure(analysis_rows(n=8, decay=0.5))
    assert fig.layout.yaxis.type == "log"
    assert "×0.5" in fig.layout.title.text
    np.testing.assert_allclose(fig.data[0].y, 0.5 ** np.arange(9))


def test_mean_length_figure_follows_the_analyses_over_steps():
    paths = pd.concat([analysis_rows(n=10, step=0, decay=1.0), analysis_rows(n=10, step=50, decay=0.2)])
    fig = charts_paths.mean_length_figure(paths, blocks=10)
    mean = next(t for t in fig.data if (t.name or "").startswith("gradient-weighted"))
    assert list(mean.x) == [0, 50]
    assert mean.y[0] == pytest.approx(5.0) and mean.y[1] < 2.5
    half = next(t for t in fig.data if (t.name or "").startswith("n/2"))
    assert list(half.y) == [5.0, 5.0]


def test_lesion_figure_marks_blocks_that_change_shape_and_keeps_the_latest_study():
    lesion = pd.DataFrame([
        {"model": "resnet-14", "block": -1, "train_error": 0.05},
        *({"model": "resnet-14", "block": b, "train_error": 0.06 + 0.01 * b} for b in range(6)),
        {"model": "plain-14", "block": -1, "train_error": 0.10},
        *({"model": "plain-14", "block": b, "train_error": math.nan if b in (2, 4) else 0.7} for b in range(6)),
        {"model": "resnet-14", "block": 0, "train_error": 0.5},  # a second study replaced block 0's row
    ])
    fig = charts_paths.lesion_figure(lesion, {"resnet-14": [2, 4], "plain-14": [2, 4]})
    by_name = {t.name: t for t in fig.data if t.showlegend is not False}
    assert set(by_name) == {"resnet-14", "plain-14"}
    assert list(by_name["resnet-14"].x) == [1, 2, 3, 4, 5, 6]
    assert by_name["resnet-14"].y[0] == pytest.approx(50.0)
    cannot = [t for t in fig.data if t.mode == "markers+text"]
    assert len(cannot) == 1 and list(cannot[0].x) == [3, 5] and set(cannot[0].text) == {"changes shape"}
    diamonds = [t for t in fig.data if t.marker.symbol == "diamond-open"]
    assert len(diamonds) == 1 and list(diamonds[0].x) == [3, 5]  # only the residual net can lose them
    intact = [t for t in fig.data if (t.name or "").endswith("nothing deleted")]
    assert sorted(t.y[0] for t in intact) == pytest.approx([5.0, 10.0])
    summary = charts_paths.lesion_summary(lesion).set_index("model")
    assert summary.loc["plain-14", "median_deleted"] == pytest.approx(0.7)
    assert summary.loc["resnet-14", "worst_deleted"] == pytest.approx(0.5)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_path_drawing_shows_every_one_of_the_2_to_the_n_paths(n):
    fig = charts_paths.path_drawing_figure(n, {k: 1 / (n + 1) for k in range(n + 1)})
    lines = [t for t in fig.data if t.mode == "lines"]
    assert sum(t.x.count(None) for t in lines) == 2**n  # one row per path
    boxes = [t for t in fig.data if t.mode == "markers+text"]
    assert sum(len(t.x) for t in boxes) == n * 2 ** (n - 1)  # each block is on half of the paths
    labels = [a.text for a in fig.layout.annotations if a.text.startswith("k = ")]
    assert labels[n // 2].startswith(f"k = {n // 2}: {math.comb(n, n // 2)} path")
    assert all("of the gradient" in label for label in labels)


def test_path_drawing_refuses_more_than_five_blocks():
    with pytest.raises(ValueError, match="1 to 5"):
        charts_paths.path_drawing_figure(6)


def test_expansion_latex_for_small_and_large_stacks():
    small = charts_paths.expansion_latex(3)
    assert len(small) == 3
    assert small[0].startswith("\\begin{aligned}x_{3} &= x_{2} + \\mathcal{F}_{2}(x_{2})")
    assert small[0].count("\\mathcal{F}_{0}") == 4  # F_0(x_0) appears four times in x_3 unrolled
    assert "k=1:\\ 3" in small[1] and "k=3:\\ 1" in small[1] and "J_{2} J_{1} J_{0}" in small[1]
    large = charts_paths.expansion_latex(27)
    assert len(large) == 4 and large[:2] == small[:2]  # the first three blocks, then the whole stack
    assert "\\binom{27}{k}" in large[2] and "x_{27}" in large[2]
    assert charts_paths.expansion_latex(1)[0] == "\\begin{aligned}x_{1} &= x_{0} + \\mathcal{F}_{0}(x_{0})\\end{aligned}"


# ---- the panel, without a browser ----------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run() -> RunRecord:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    s = Settings(models=("plain-8", "resnet-8"), steps=20, paths_every=10, eval_every=10, dataset_args={"n": 300})
    trainer = LockstepTrainer(s, recorders=standard())
    trainer.run()
    trainer.call("lesion_study")
    torch.set_num_threads(before)
    return trainer.record


def panel_app(record, settings, live: bool):
    from dashboard.panels.paths import render_paths_panel

    calls = []
    request = (lambda method, **kw: calls.append(method)) if live else None
    render_paths_panel(record, settings, request)
    import streamlit as st

    st.session_state["calls"] = calls + st.session_state.get("calls", [])


def test_panel_replays_a_record_with_formulas_charts_and_lesions(small_run):
    settings = Settings.from_dict(small_run.config["settings"])
    at = AppTest.from_function(panel_app, args=(small_run, settings, False), default_timeout=30).run()
    assert not at.exception
    assert len(at.latex) == 3  # resnet-8: 3 blocks, written out in full
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mean length of all paths"] == "1.5"
    assert float(metrics["Gradient-weighted mean length"]) < 3
    assert not at.button  # no live job: nothing to ask for
    assert len(at.dataframe) == 1


def test_panel_asks_the_live_job_for_a_lesion_study(small_run):
    at = AppTest.from_function(panel_app, args=(small_run, None, True), default_timeout=30).run()
    assert not at.exception
    at.button(key="paths_run_lesion").click().run()
    assert not at.exception
    assert at.session_state["calls"] == ["lesion_study"]


def test_panel_without_residual_models_or_analyses_says_what_to_do():
    record = RunRecord({"models": [{"name": "plain-8", "blocks": 3}], "settings": Settings(models=("plain-8",)).to_dict()})
    at = AppTest.from_function(panel_app, args=(record, None, False), default_timeout=30).run()
    assert not at.exception
    texts = " ".join(i.value for i in at.info)
    assert "residual" in texts and "lesion" in texts.lower()
