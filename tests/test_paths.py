"""The unrolled view: the path-length decomposition g = sum_k g_k of the gradient at the input of the
block stack, checked against autograd, against closed forms and brute force, and on a trained net."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import resnet_core.analysis.paths.adjoints as block_adjoints
from resnet_core.training.tensors import load_dataset
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import standard
from resnet_core.nets.models import Block, Net, Unit, build_model
from resnet_core.analysis.paths import path_counts, shortest_range, summary_from_rows
from resnet_core.analysis.paths.compute import analyse_paths, path_gradients, probe_points, rows_for_record, sampled_path_norms
from resnet_core.presets import get_preset
from resnet_core.records import PATH_COLUMNS, RunRecord
from resnet_core.settings import ModelSpec, Settings


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", {})


def trained_a_little(net: Net, x: torch.Tensor, y: torch.Tensor, steps: int = 5) -> Net:
    """A few SGD steps, so BN's statistics and weights are no longer the initial ones."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


MLP_CASES = [  # (model, settings changes): original and pre-activation, every shortcut, shape changes
    ("resnet-14", {}),
    ("resnet-14", {"block": "pre"}),
    ("resnet-14", {"shortcut": "projection"}),
    ("resnet-20", {"stages": 3}),                          # identity, projection where the width doubles
    ("resnet-20", {"stages": 3, "shortcut": "pad", "block": "pre"}),
    ("resnet-14", {"norm": "none", "init": "default"}),
    ("resnet-11", {"branch_layers": 3}),
    ("resnet-8", {"branch_layers": 1, "block": "pre"}),
]


@pytest.mark.parametrize("model,changes", MLP_CASES)
def test_mlp_path_terms_add_up_to_autograds_gradient(spirals, model, changes):
    s = Settings(models=(model,), **changes).checked()
    x, y = spirals.x_train[:128], spirals.y_train[:128]
    net = trained_a_little(build_model(model, s, spirals.input_shape, spirals.n_classes), x, y)
    for bn in ("probe", "eval"):
        result = path_gradients(net, x, y, tol=0, bn=bn, keep_terms=True)
        assert result.exact and result.cutoff == len(net.blocks)
        assert result.residual < 1e-5, (model, changes, bn, result.residual)
        assert relative(result.terms.sum(0), result.gradient) < 1e-5
        assert result.terms.shape == (len(net.blocks) + 1, *result.gradient.shape)


@pytest.mark.parametrize("changes", [{"shortcut": "pad"}, {"shortcut": "identity", "block": "pre"},
                                     {"shortcut": "projection"}])
def test_cnn_path_terms_add_up_to_autograds_gradient(digits, changes):
    s = Settings(dataset="digits", arch="cnn", width=8, models=("resnet-20",), **changes).checked()
    x, y = digits.x_train[:64], digits.y_train[:64]
    net = trained_a_little(build_model("resnet-20", s, digits.input_shape, digits.n_classes), x, y, steps=2)
    result = path_gradients(net, x, y, tol=0, keep_terms=True)
    assert len(net.blocks) == 9 and result.cutoff == 9
    assert result.residual < 1e-5, (changes, result.residual)


def test_the_analysis_leaves_the_net_as_it_found_it(spirals):
    s = Settings(models=("resnet-14",)).checked()
    net = build_model("resnet-14", s, spirals.input_shape, spirals.n_classes)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path_gradients(net, spirals.x_train[:64], spirals.y_train[:64])
    assert net.training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_torch_func_fallback_gives_the_same_terms(spirals, monkeypatch):
    s = Settings(models=("resnet-14",), stages=2).checked()
    x, y = spirals.x_train[:64], spirals.y_train[:64]
    net = trained_a_little(build_model("resnet-14", s, spirals.input_shape, spirals.n_classes), x, y)
    fast = path_gradients(net, x, y, tol=0, keep_terms=True)

    def unknown(*args, **kwargs):
        raise TypeError("pretend this layer is unknown")
    monkeypatch.setattr(block_adjoints.LinearBlock, "_branch_ops", staticmethod(unknown))
    slow = path_gradients(net, x, y, tol=0, keep_terms=True)
    assert slow.residual < 1e-5
    assert relative(slow.terms, fast.terms) < 1e-5


# ---- closed forms -------------------------------------------------------------------------------
def linear_net(diagonals: list[torch.Tensor] | None = None, matrices: list[torch.Tensor] | None = None) -> Net:
    """x_{i+1} = x_i + A_i x_i with the given A_i: no ReLU, no BN, so the expansion is exact algebra."""
    mats = matrices if matrices is not None else [torch.diag(d) for d in diagonals]
    width = mats[0].shape[0]
    blocks = []
    for a in mats:
        layer = nn.Linear(width, width, bias=False, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(a)
        blocks.append(Block([Unit(layer, None, pre=False)], None, residual=True, pre=True, changes_shape=False))
    stem, head = Unit(nn.Linear(2, width), None, pre=False), Unit(nn.Linear(width, 3), None, pre=False)
    return Net(ModelSpec("resnet", len(mats) + 2), stem, blocks, head, pre=True).double()


def test_diagonal_linear_branches_give_elementary_symmetric_polynomials():
    """With A_i = diag(a_i), J = prod (1 + a_i) per coordinate, and g_k = e_k(a_0..a_{n-1}) * g_0:
    the coefficients of prod_i (1 + a_i t)."""
    gen = torch.Generator().manual_seed(0)
    n, width = 7, 5
    diagonals = [0.6 * torch.randn(width, generator=gen, dtype=torch.float64) for _ in range(n)]
    net = linear_net(diagonals)
    x, y = torch.randn(16, 2, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,), generator=gen)
    result = path_gradients(net, x, y, tol=0, keep_terms=True)
    g0 = result.terms[0]
    for c in range(width):
        coefficients = np.array([1.0])
        for d in diagonals:  # prod_i (1 + a_i t), one factor at a time
            coefficients = np.convolve(coefficients, [1.0, d[c].item()])
        for k in range(n + 1):
            expected = coefficients[k] * g0[:, c]
            assert torch.allclose(result.terms[k][:, c], expected, rtol=1e-9, atol=1e-12)
    # all branches equal: |g_k| = C(n, k) a^k |g_0|, the binomial weighted by a^k
    net = linear_net([torch.full((width,), 0.3, dtype=torch.float64)] * n)
    result = path_gradients(net, x, y, tol=0)
    expected = path_counts(n) * 0.3 ** np.arange(n + 1) * result.grad_norm[0]
    np.testing.assert_allclose(result.grad_norm, expected, rtol=1e-9)


def test_general_linear_branches_match_the_sum_over_all_two_to_the_n_paths():
    gen = torch.Generator().manual_seed(1)
    n, width = 5, 4
    mats = [0.5 * torch.randn(width, width, generator=gen, dtype=torch.float64) for _ in range(n)]
    net = linear_net(matrices=mats)
    x, y = torch.randn(8, 2, generator=gen, dtype=torch.float64), torch.randint(0, 3, (8,), generator=gen)
    result = path_gradients(net, x, y, tol=0, keep_terms=True)
    top = result.terms[0]  # g_0: the skip path, i.e. the gradient arriving from the head
    brute = torch.zeros_like(result.terms)
    for chosen in itertools.product([0, 1], repeat=n):  # every path, written out
        jac = torch.eye(width, dtype=torch.float64)
        for i in range(n):
            jac = (mats[i] if chosen[i] else torch.eye(width, dtype=torch.float64)) @ jac
        brute[sum(chosen)] += top @ jac
    assert torch.allclose(result.terms, brute, rtol=1e-10, atol=1e-13)


# ---- the cutoff and the summaries -----------------------------------------------------------------
def test_the_cutoff_changes_the_sum_by_less_than_its_tolerance(spirals):
    s = Settings(models=("resnet-42",), block="pre").checked()
    x, y = spirals.x_train[:128], spirals.y_train[:128]
    net = build_model("resnet-42", s, spirals.input_shape, spirals.n_classes)
    full = path_gradients(net, x, y, tol=0, keep_terms=True)
    for tol in (1e-2, 1e-3, 1e-4):
        cut = path_gradients(net, x, y, tol=tol, start_length=2, keep_terms=True)
        assert cut.cutoff < full.cutoff  # it did cut
        change = (full.terms[cut.cutoff + 1:].sum(0)).norm() / full.gradient.norm()
        assert change < tol and cut.residual < tol
        np.testing.assert_allclose(cut.grad_norm, full.grad_norm[: cut.cutoff + 1], rtol=1e-4)
    capped = path_gradients(net, x, y, max_length=2)
    assert capped.cutoff == 2 and capped.residual > 1e-2  # the residual owns up to what a cap leaves out


def test_probe_batch_is_smaller_where_points_are_big(spirals, digits):
    mlp = build_model("resnet-14", Settings(models=("resnet-14",)).checked(), spirals.input_shape, 3)
    assert probe_points(mlp, spirals.x_train) == 256
    s = Settings(dataset="digits", arch="cnn", width=16, models=("resnet-20",)).checked()
    cnn = build_model("resnet-20", s, digits.input_shape, 10)
    assert probe_points(cnn, digits.x_train) == 65536 // (16 * 8 * 8)
    assert cnn.training and mlp.training


def test_shortest_range_and_counts():
    assert shortest_range(np.array([0.05, 0.5, 0.4, 0.05])) == (1, 2)
    assert shortest_range(np.array([0.0, 0.0, 1.0])) == (2, 2)
    assert shortest_range(np.array([0.3, 0.3, 0.3, 0.1])) == (0, 2)
    counts = path_counts(54)
    assert counts.sum() == 2.0**54 and counts[27] == math.comb(54, 27)
    assert np.isfinite(path_counts(1000)).all()


def test_rows_follow_the_records_contract(spirals):
    s = Settings(models=("resnet-14",)).checked()
    net = build_model("resnet-14", s, spirals.input_shape, spirals.n_classes)
    exact, sampled = analyse_paths(net, spirals.x_train[:64], spirals.y_train[:64], samples=2)
    rows = rows_for_record(exact, sampled, step=7, model="resnet-14")
    record = RunRecord()
    record.add_paths(rows)
    frame = record.paths_frame()
    assert list(frame.columns) == PATH_COLUMNS + ["path_norm"] and len(frame) == exact.cutoff + 1
    assert frame.path_norm.gt(0).all()  # Veit et al.'s sampled per-path magnitude travels with the rows
    assert frame.step.eq(7).all() and frame.share.sum() == pytest.approx(1.0)
    assert list(frame.n_paths) == [math.comb(6, k) for k in range(exact.cutoff + 1)]
    assert all(np.isfinite(r["path_norm"]) and r["path_norm"] > 0 for r in rows)
    summary = summary_from_rows(frame)
    assert summary["blocks"] == 6 and summary["mean_length"] == pytest.approx(exact.mean_length)
    assert (summary["range_lo"], summary["range_hi"]) == exact.length_range()


def test_sampled_paths_fall_exponentially_and_bound_the_exact_terms(spirals):
    """Veit et al.: the gradient through one path shrinks with every branch it passes through."""
    s = Settings(models=("resnet-42",), block="pre").checked()
    x, y = spirals.x_train[:128], spirals.y_train[:128]
    net = trained_a_little(build_model("resnet-42", s, spirals.input_shape, spirals.n_classes), x, y)
    sampled = sampled_path_norms(net, x, y, samples=6, points=128)
    assert list(sampled.lengths) == list(range(21))
    assert sampled.decay_per_branch < 0.9
    assert sampled.log10_path_norm[15:].mean() < sampled.log10_path_norm[:5].mean() - 2
    exact = path_gradients(net, x, y, tol=0)
    # k = 0 is a single path, sampled exactly; its norm is |g_0|
    assert sampled.path_norm[0] == pytest.approx(exact.grad_norm[0], rel=1e-4)
    # a sum of C(n, k) vectors is at most C(n, k) times their mean length (up to sampling noise)
    assert (exact.grad_norm[:12] <= 3 * sampled.total[:12]).all()


# ---- the finding, on the degradation preset's trained residual net ------------------------------------
@pytest.fixture(scope="module")
def trained_degradation():
    torch.set_num_threads(1)  # module fixtures run before the per-test one_thread
    s = get_preset("degradation").settings(models=("resnet-56", "plain-56"), steps=150, paths_every=150,
                                           eval_every=50, probe_every=50)
    trainer = LockstepTrainer(s, recorders=standard())
    trainer.run()
    return trainer


def test_trained_residual_net_draws_its_gradient_from_short_paths(trained_degradation):
    trainer = trained_degradation
    frame = trainer.record.paths_frame()
    assert set(frame.model) == {"resnet-56"}  # the plain twin has no paths to unroll
    assert sorted(frame.step.unique()) == [0, 150]
    final = frame[frame.step == 150]
    summary = summary_from_rows(final)
    assert summary["blocks"] == 27
    assert summary["mean_length"] < 0.4 * summary["binomial_mean"], summary  # well below n / 2
    assert summary["range_hi"] < summary["binomial_mean"]  # 90 % of the gradient on paths shorter than n / 2
    assert summary["mean_length"] < summary_from_rows(frame[frame.step == 0])["mean_length"]  # training shortened it
    assert final.residual.max() < 1e-4


def test_paths_are_counted_in_log_space_past_what_a_float_holds():
    """Issue 20, item 11: from about 1,030 blocks the middle lengths hold more paths than a float64
    counts (C(1100, 550) ~ 1e330): counting raised OverflowError and ended the run."""
    from resnet_core.analysis.paths import log10_path_counts
    from resnet_core.analysis.paths.compute import SampledPaths

    counts, logs = path_counts(1100), log10_path_counts(1100)
    exact = [math.comb(1100, k) for k in range(1101)]
    assert all(abs(logs[k] - math.log10(exact[k])) < 1e-9 for k in range(1101))
    fits = np.isfinite(counts)
    assert fits[:100].all() and not fits[550] and all(counts[k] == float(exact[k]) for k in np.flatnonzero(fits))
    assert list(path_counts(10)) == [float(math.comb(10, k)) for k in range(11)]  # small nets: exact, as before
    sampled = SampledPaths(1100, np.array([1, 550]), np.array([-1.0, -200.0]), 4)
    assert np.allclose(np.log10(sampled.total), [-1.0 + math.log10(1100), -200.0 + logs[550]])


@pytest.mark.slow
def test_a_net_of_1100_blocks_trains_and_records_its_paths(tmp_path):
    from resnet_core.cli import main

    assert main(["train", "--models", "resnet-1100-b1", "--steps", "1", "--out", str(tmp_path / "run")]) == 0
    paths = pd.read_csv(tmp_path / "run" / "paths.csv")
    assert paths["length"].max() > 0 and np.isfinite(paths["share"]).all()
