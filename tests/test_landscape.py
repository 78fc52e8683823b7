"""The loss landscape (Li et al. 2018): filter-normalised directions, a grid centred on the trained
net, and a rougher surface for a deep plain net than for its residual twin."""
import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from resnet_core.training.tensors import load_dataset
from resnet_core.analysis.landscape.compute import (filter_normalized_direction, grid_coordinates, landscape_job, loss_batch,
                                   loss_line, loss_surface, mean_loss, roughness, train_twins)
from resnet_core.nets.models import build_model
from resnet_core.settings import Settings, SettingsError


SMALL = Settings(models=("plain-14", "resnet-14"), width=16, steps=30, eval_every=10, dataset_args={"n": 400})


def _check_normalised(net: nn.Module, direction: list[torch.Tensor]) -> int:
    checked = 0
    for p, d in zip(net.parameters(), direction):
        assert d.shape == p.shape
        if p.dim() <= 1:  # biases and batch-norm scales and shifts: left where they are
            assert torch.count_nonzero(d) == 0
            continue
        torch.testing.assert_close(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5, atol=1e-7)
        checked += 1
    return checked


def test_directions_match_each_neurons_norm_and_leave_bias_and_batchnorm_alone():
    net = build_model("resnet-14", SMALL.with_changes(norm="batch"), (2,), 3)
    direction = filter_normalized_direction(net, seed=0)
    assert _check_normalised(net, direction) == 14  # every weighted layer
    no_bn = build_model("plain-14", SMALL.with_changes(norm="none"), (2,), 3)  # with biases
    assert any(p.dim() == 1 for p in no_bn.parameters())
    _check_normalised(no_bn, filter_normalized_direction(no_bn, seed=0))


def test_directions_of_a_convnet_are_normalised_filter_by_filter():
    s = Settings(dataset="digits", arch="cnn", models=("plain-8",), width=8)
    net = build_model("plain-8", s, (1, 8, 8), 10)
    direction = filter_normalized_direction(net, seed=3)
    conv = [d for p, d in zip(net.parameters(), direction) if p.dim() == 4]
    assert conv and _check_normalised(net, direction) == 8


def test_directions_are_reproducible_and_differ_between_seeds():
    net = build_model("plain-14", SMALL, (2,), 3)
    a, b, c = (filter_normalized_direction(net, s) for s in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, z) for x, z in zip(a, c) if x.dim() > 1)


def test_the_grid_is_centred_on_the_trained_net_and_leaves_it_unchanged():
    data = load_dataset("spirals", {"n": 400})
    nets = train_twins(SMALL, steps=30, data=data)
    net = nets["resnet-14"]
    before = [p.detach().clone() for p in net.parameters()]
    x, y = loss_batch(data, torch.device("cpu"))
    net.eval()
    trained_loss = mean_loss(net, x, y)
    d1, d2 = filter_normalized_direction(net, 0), filter_normalized_direction(net, 1)
    a, b, grid = loss_surface(net, x, y, d1, d2, n=5)
    assert a[2] == 0.0 and b[2] == 0.0 and list(a) == [-1, -0.5, 0, 0.5, 1]
    assert grid[2, 2] == trained_loss
    alphas, line = loss_line(net, x, y, d1, n=7)
    assert line[3] == trained_loss
    assert line[0] > trained_loss and line[-1] > trained_loss  # a full filter's norm away is worse
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))


def test_grid_sizes_must_be_odd_so_the_centre_is_a_grid_point():
    assert grid_coordinates(3).tolist() == [-1, 0, 1]
    with pytest.raises(SettingsError, match="odd"):
        grid_coordinates(10)


def test_roughness_separates_a_bowl_from_a_bumpy_surface():
    c = grid_coordinates(21)
    a, b = np.meshgrid(c, c)
    bowl = roughness(a**2 + b**2)
    bumpy = roughness(a**2 + b**2 + 0.3 * np.sin(12 * a) * np.cos(12 * b))
    assert bowl["nonconvex_fraction"] == 0 and bowl["local_minima"] == 1
    assert bumpy["nonconvex_fraction"] > 0.3 and bumpy["local_minima"] > 3
    assert roughness(c**2)["nonconvex_fraction"] == 0  # a 1D line too


def test_the_deep_plain_net_has_a_rougher_landscape_than_its_residual_twin():
    """Measured, depth 32, 150 steps, 11x11 grids, 5 training seeds x 2 direction pairs: loss range
    plain 3e5..2e6 against residual 6e2..3e3; non-convex points plain 0.36..0.72, residual
    0.06..0.32, plain above its own twin in every case."""
    for seed in (0, 1):
        s = Settings(models=("plain-32", "resnet-32"), seed=seed, steps=150)
        data = load_dataset(s.dataset, s.dataset_args)
        nets = train_twins(s, steps=150, data=data)
        x, y = loss_batch(data, torch.device("cpu"))
        rough = {}
        for name, net in nets.items():
            d1, d2 = filter_normalized_direction(net, 0), filter_normalized_direction(net, 1)
            rough[name] = roughness(loss_surface(net, x, y, d1, d2, n=11)[2])
        assert rough["plain-32"]["loss_range"] > 20 * rough["resnet-32"]["loss_range"]
        assert rough["plain-32"]["nonconvex_fraction"] > rough["resnet-32"]["nonconvex_fraction"]


def test_the_job_streams_each_nets_landscape_and_reuses_the_trained_twins():
    args = {"settings": SMALL.to_dict(), "depth": 14, "steps": 30, "grid": 5, "line": 9, "seed": 0}
    first, second = [], []
    out = landscape_job(args, lambda partial=None: partial is None or first.append(partial))  # None: a place to pause
    assert json.loads(json.dumps(out)) == out
    assert set(out["models"]) == {"plain-14", "resnet-14"}
    views = [r for r in first if "landscape" in r]
    assert [v["model"] for v in views] == ["plain-14", "resnet-14"]
    assert any(r.get("stage") == "training" for r in first)
    view = out["models"]["resnet-14"]
    assert len(view["loss"]) == 5 and len(view["loss"][0]) == 5 and view["loss"][2][2] == view["centre_loss"]
    refined = landscape_job({**args, "grid": 7}, lambda partial=None: partial is None or second.append(partial))
    assert not any(r.get("stage") == "training" for r in second)  # "Refine" does not train again
    assert refined["models"]["resnet-14"]["centre_loss"] == view["centre_loss"]


# ------------------------------------------------------------------------------ charts and panel
VIEW = {"centre_loss": 0.5, "line_alpha": [-1, 0, 1], "line_loss": [10.0, 0.5, None],
        "alpha": [-1, 0, 1], "beta": [-1, 0, 1], "loss": [[10, 1, 10], [1, 0.5, 1], [100, 1, None]],
        "roughness": {"loss_range": 99.5, "nonconvex_fraction": 0.0, "local_minima": 1}}


def test_surfaces_are_log_loss_on_one_colour_scale_with_the_trained_net_marked():
    from dashboard.charts.studies import landscape_line_figure, landscape_range, landscape_surface_figure, roughness_table

    other = {**VIEW, "loss": [[1000, 1, 1], [1, 0.5, 1], [1, 1, 1]]}
    zrange = landscape_range({"plain-8": other, "resnet-8": VIEW})
    assert zrange == pytest.approx((np.log10(0.5), 3.0))
    fig = landscape_surface_figure(VIEW, zrange)
    contour, star = fig.data
    assert contour.type == "contour" and (contour.zmin, contour.zmax) == pytest.approx(zrange)
    assert contour.z[0][0] == pytest.approx(1.0) and np.isnan(contour.z[2][2])  # an overflow is a gap
    assert (star.x[0], star.y[0]) == (0.0, 0.0)
    assert landscape_surface_figure(VIEW, zrange, kind="surface").data[0].type == "surface"
    line = landscape_line_figure({"plain-8": other, "resnet-8": VIEW})
    assert line.layout.yaxis.type == "log" and [t.name for t in line.data if t.name] == ["plain-8", "resnet-8"]
    assert list(roughness_table({"resnet-8": VIEW}).iloc[0])[:2] == ["resnet-8", 0.5]


@pytest.fixture
def release_sessions():
    yield
    import streamlit as st

    st.cache_resource.clear()  # on_release cancels the panel's work and ends its process


PANEL = """
from resnet_core.settings import Settings
from dashboard.panels.landscape import render_landscape_panel
render_landscape_panel(Settings(models=("plain-8", "plain-14", "resnet-14"), width=16, steps=20,
                                dataset_args={"n": 400}))
"""


def wait_for_charts(at, count: int) -> None:
    deadline = time.monotonic() + 60
    while (at.get("progress") or len(at.get("plotly_chart")) < count) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()


def test_the_panel_trains_the_twins_then_refines_without_training_again(release_sessions):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(PANEL, default_timeout=30).run()
    assert not at.exception and not at.get("plotly_chart")  # nothing heavy on page load
    assert at.selectbox(key="landscape_depth").value == 14  # the deepest plain net of the settings
    assert at.button(key="landscape_refine").disabled  # nothing to refine yet
    at.button(key="landscape_run").click().run()
    wait_for_charts(at, 3)
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 3  # plain surface, residual surface, the 1D line
    labels = [m.label for m in at.metric]
    assert labels.count("non-convex") == 2 and labels.count("loss at θ") == 2
    assert "11×11 grid" in " ".join(c.value for c in at.caption)
    at.button(key="landscape_refine").click().run()
    wait_for_charts(at, 3)
    assert "21×21 grid" in " ".join(c.value for c in at.caption) and not at.error
