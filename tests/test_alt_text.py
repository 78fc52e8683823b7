"""Each chart in words (dashboard/charts/alt_text.py), computed from the numbers it draws."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dashboard import charts
from dashboard.charts.alt_text import error_alt, figure_alt
from dashboard.charts.layers import gradient_heatmaps


def metrics(rows):
    return pd.DataFrame([dict(zip(("step", "model", "train_error", "test_error", "status"), r), train_loss=1.0, wall_s=0.0)
                         for r in rows])


def test_the_degradation_chart_says_the_gap_at_the_last_step():
    table = metrics([(0, "plain-56", 0.7, 0.7, "ok"), (0, "resnet-56", 0.7, 0.7, "ok"), (0, "plain-20", 0.7, 0.7, "ok"),
                     (400, "plain-56", 0.54, 0.56, "ok"), (400, "resnet-56", 0.04, 0.08, "ok"),
                     (400, "plain-20", 0.12, 0.15, "ok")])
    words = error_alt(table, ["plain-20", "plain-56", "resnet-56"])
    assert words.startswith("Training and test error against step. At step 400: plain-56 has 54 % training error, "
                            "50 points above resnet-56 (4 %); plain-20 12 %.")
    assert "Test error: plain-56 56 %, plain-20 15 %, resnet-56 8 %." in words


def test_a_diverged_model_and_an_empty_run_are_said_so():
    table = metrics([(0, "plain-8", 0.6, 0.6, "ok"), (0, "resnet-302", 0.6, 0.6, "ok"),
                     (1, "resnet-302", math.nan, math.nan, "diverged")])
    assert error_alt(table, ["plain-8", "resnet-302"]).endswith("Diverged: resnet-302.")
    assert error_alt(table.iloc[:0], ["plain-8"]).endswith("nothing evaluated yet.")


def test_any_chart_in_words_from_its_traces():
    table = metrics([(0, "plain-8", 0.5, 0.6, "ok"), (10, "plain-8", 0.25, 0.3, "ok")])
    words = figure_alt(charts.loss_figure(table, ["plain-8"]))
    assert words == "training loss against step. plain-8 1 at step 10."
    heat = gradient_heatmaps({"plain-8": (np.array([0, 2]), np.array([[1e-3, 1.0], [1e-2, 10.0]]))})
    assert "plain-8: 2 rows by 2 columns, from -3 to 1" in figure_alt(heat)
