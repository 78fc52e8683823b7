"""Shattered gradients (Balduzzi et al. 2017): df/dx of one-input nets along a line, and how fast the
correlation between neighbours' gradients falls with depth for plain and residual nets."""
import json
import time

import numpy as np
import pytest
import torch

from resnet_core.settings import SettingsError
from resnet_core.analysis.shattered.compute import (input_gradients, line_inputs, neighbour_correlation, scalar_net, scalar_settings,
                                   shattered_gradients, shattered_job)


def test_the_gradient_is_each_inputs_own_derivative():
    """With batch norm the statistics are the line's, then frozen: the gradient must match finite
    differences of that same function, input by input (float64 to see it sharply)."""
    for family in ("plain", "resnet"):
        net = scalar_net(family, 8, scalar_settings(width=32, branch_layers=2)).double()
        x = line_inputs(64)
        grad = input_gradients(net, x)
        h = 1e-6
        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=torch.float64).reshape(-1, 1)
            numeric = ((net(xt + h) - net(xt - h)) / (2 * h)).reshape(-1).numpy()
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_neighbour_correlation_tells_white_from_brown_noise():
    rng = np.random.default_rng(0)
    white = rng.normal(size=4096)
    assert abs(neighbour_correlation(white)) < 0.05
    assert neighbour_correlation(np.cumsum(white)) > 0.99  # a random walk: brown noise
    assert neighbour_correlation(np.ones(10)) == 1.0  # a linear function's gradient


def test_shallow_nets_have_smooth_gradients_in_both_families():
    result = shattered_gradients(depths=(4,), seeds=(0, 1, 2), width=128)
    assert result.mean_correlation("plain")[0] > 0.85
    assert result.mean_correlation("resnet")[0] > 0.85


def test_plain_gradients_shatter_with_depth_while_residual_ones_stay_correlated():
    """Measured over 16 seeds, width 128, in sets of 4: at depth 20 plain -0.12..-0.02 and residual
    0.81..0.86 (no single seed below 0.77); at depth 50 plain -0.06..0.00, residual 0.65..0.70."""
    result = shattered_gradients(depths=(4, 20, 50), seeds=(0, 1, 2, 3), width=128)
    plain, resnet = result.mean_correlation("plain"), result.mean_correlation("resnet")
    assert abs(plain[1]) < 0.2 and abs(plain[2]) < 0.2  # white noise
    assert resnet[1] > 0.7 and resnet[2] > 0.5  # still correlated
    assert (plain[0] - plain[1]) > 4 * (resnet[0] - resnet[1])  # falls much faster
    assert set(result.curves) == {"plain-4", "plain-50", "resnet-50"}
    assert all(len(c) == 256 for c in result.curves.values())


def test_two_layer_branches_shatter_more_than_one_layer_branches():
    """Each two-layer branch is a small plain net of its own. Measured at depth 50 over 4 seeds:
    one-layer branches 0.69, two-layer branches 0.07 (post-activation)."""
    one = shattered_gradients(depths=(50,), seeds=(0, 1, 2, 3), width=128, branch_layers=1)
    two = shattered_gradients(depths=(50,), seeds=(0, 1, 2, 3), width=128, branch_layers=2)
    assert one.mean_correlation("resnet")[0] > two.mean_correlation("resnet")[0] + 0.2
    np.testing.assert_allclose(one.mean_correlation("plain"), two.mean_correlation("plain"))  # the very same nets


def test_a_depth_the_mlp_cannot_have_is_a_one_line_error():
    with pytest.raises(SettingsError, match="depth 7 is not valid.*try 6 or 8"):
        shattered_gradients(depths=(4, 7), seeds=(0,), branch_layers=2)


def test_the_job_reports_each_depth_as_it_goes_in_json():
    reports = []
    out = shattered_job({"depths": [4, 8], "seeds": [0], "width": 32}, reports.append)
    assert [r["progress"] for r in reports] == [0.5, 1.0]
    assert reports[0]["result"]["depths"] == [4]
    assert json.loads(json.dumps(out)) == out
    assert out["depths"] == [4, 8] and len(out["correlation"]["plain"]) == 2


# ------------------------------------------------------------------------------ chart and panel
def test_correlation_chart_is_log_scale_with_noise_on_the_floor():
    from dashboard.charts.studies import CORRELATION_FLOOR, correlation_figure, gradient_curves_figure

    result = {"depths": [4, 20], "correlation": {"plain": [[0.9, 0.95], [-0.1, 0.02]], "resnet": [[0.97, 0.95], [0.5, 0.4]]},
              "curves": {"resnet-20": [0.0] * 4, "plain-20": [1.0] * 4, "plain-4": [2.0] * 4}, "x": [0, 1, 2, 3]}
    fig = correlation_figure(result)
    assert fig.layout.yaxis.type == "log"
    lines = {t.name: t for t in fig.data if t.name}
    assert list(lines) == ["plain", "residual"]
    assert list(lines["plain"].y) == pytest.approx([0.925, CORRELATION_FLOOR])  # -0.04 drawn on the floor
    assert list(lines["plain"].customdata) == pytest.approx([0.925, -0.04])  # the true value on hover
    assert list(lines["plain"].marker.symbol) == ["circle", "circle-open"]
    curves = gradient_curves_figure(result)
    assert [a.text for a in curves.layout.annotations] == ["plain net, 4 layers", "plain net, 20 layers",
                                                          "residual net, 20 layers"]


@pytest.fixture
def release_sessions():
    yield
    import streamlit as st

    st.cache_resource.clear()  # on_release cancels the panel's work and ends its processes


PANEL = """
from resnet_core.settings import Settings
from dashboard.panels.shattered import render_shattered_panel
render_shattered_panel(Settings())
"""


def test_the_panel_runs_in_the_background_and_shows_both_charts(release_sessions):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(PANEL, default_timeout=30).run()
    assert not at.exception and len(at.get("plotly_chart")) == 0  # nothing heavy on page load
    assert "Balduzzi" in " ".join(m.value for m in at.markdown)
    at.multiselect(key="shattered_depths_1").set_value([4, 14])
    at.number_input(key="shattered_seeds").set_value(1)
    at.button(key="shattered_run").click().run()
    deadline = time.monotonic() + 60
    while (at.get("progress") or not at.get("plotly_chart")) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 2
    assert [m.label for m in at.metric] == ["plain-14: neighbour correlation", "resnet-14: neighbour correlation"]
