"""The signal, Jacobian and block-lens chart builders: valid plotly figures of the run's own numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts.lens import lens_figure
from dashboard.charts.signal import jacobian_figure, signal_figure

MODELS = ["plain-20", "resnet-20"]


def signal_table() -> pd.DataFrame:
    rows = []
    for model, growth in (("plain-20", 1.0), ("resnet-20", 2.0)):
        for step in (0, 50):
            for block in range(1, 10):
                rows.append({"step": step, "model": model, "block": block, "mean_sq": 0.1 * growth ** block,
                             "variance": growth ** block, "branch_variance": 0.0 if step == 0 else 1.0})
    return pd.DataFrame(rows)


def test_the_signal_plot_draws_each_model_at_step_0_and_now_on_log_axes():
    fig = signal_figure(signal_table(), MODELS)
    go.Figure(fig.to_dict())  # validates every property
    assert len(fig.data) == 3 * 2 * 2 and fig.layout.yaxis.type == fig.layout.yaxis3.type == "log"
    resnet_now = [t for t in fig.data if t.name == "resnet-20" and t.xaxis == "x2" and t.line.dash == "solid"][0]
    assert np.allclose(resnet_now.y, 2.0 ** np.arange(1, 10))
    zero_branch = [t for t in fig.data if t.xaxis == "x3" and t.line.dash == "dot"][0]
    assert np.isnan(zero_branch.y).all(), "a log axis leaves zeros as gaps"


def test_the_jacobian_histogram_bins_log_singular_values_of_the_latest_step():
    rows = [{"step": s, "model": m, "index": i, "singular_value": v}
            for s in (0, 10) for m, values in (("plain-20", [100.0, 1.0, 1e-3]), ("resnet-20", [1.0, 1.0, 1.0]))
            for i, v in enumerate(values if s == 10 else [5.0] * 3)]
    fig = jacobian_figure(pd.DataFrame(rows), MODELS)
    go.Figure(fig.to_dict())
    assert [np.asarray(t.x).tolist() for t in fig.data] == [[2.0, 0.0, -3.0], [0.0, 0.0, 0.0]]


def test_the_lens_chart_reads_the_latest_step_in_percent_with_chance():
    rows = [{"step": s, "model": m, "block": b, "train_error": e, "train_loss": 1.0}
            for s in (0, 40) for m in MODELS for b, e in ((1, 0.6), (2, 0.3 if s else 0.6))]
    fig = lens_figure(pd.DataFrame(rows), MODELS, chance=2 / 3)
    go.Figure(fig.to_dict())
    assert [np.asarray(t.y).tolist() for t in fig.data] == [[60.0, 30.0], [60.0, 30.0]]
    assert abs(fig.layout.shapes[0].y0 - 66.667) < 0.01
