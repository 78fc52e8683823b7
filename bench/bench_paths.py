"""The unrolled view's speed, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/bench_paths.py [--quick]

1. Exact path-length decomposition of a 32-block residual MLP (resnet-66, width 32) on a 256-point
   probe, after warm-up (goal <= 100 ms); beside it, autograd's plain input gradient of the same
   net (one forward and backward) and the same decomposition through torch.func.vjp + vmap.
2. The same for the 1002-layer net (500 pre-activation blocks), from cold (a pilot picks the
   cutoff) and with the last cutoff as a hint, as the live analysis runs (goal <= 3 s).
3. What the live analysis costs training at the default cadence (paths_every = 50): the time
   spent in path_analysis over the time spent training, for the degradation preset and for the
   thousand-layers preset, one process, one thread (goal < 10 %).

Timings are the best of several repeats: the machine may be shared.
"""
from __future__ import annotations

import argparse
import os
import time


import torch
import torch.nn.functional as F

import resnet_core.analysis.paths.adjoints as block_adjoints
from resnet_core.training.tensors import load_dataset
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import UnrolledPaths
from resnet_core.nets.models import build_model
from resnet_core.analysis.paths.compute import analyse_paths, path_gradients
from resnet_core.presets import get_preset
from resnet_core.settings import Settings


def best_of(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def trained_net(model: str, settings: Settings, data, steps: int):
    """A net a few SGD steps in, so its BN statistics and weights are not the initial ones."""
    net = build_model(model, settings, data.input_shape, data.n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for i in range(steps):
        idx = torch.arange(i * 128, (i + 1) * 128) % len(data.x_train)
        opt.zero_grad()
        F.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()
    return net


def input_gradient(net, x, y) -> None:
    net.eval()
    x0 = net.features(x).detach().requires_grad_(True)
    h = x0
    for block in net.blocks:
        h = block(h)
    torch.autograd.grad(F.cross_entropy(net.head(h), y), x0)
    net.train()


def with_torch_func(fn):
    """Run fn with every block's maps built by torch.func.vjp + vmap (the fallback route)."""
    original = block_adjoints.LinearBlock._branch_ops

    def unknown(*args, **kwargs):
        raise TypeError("use torch.func")
    block_adjoints.LinearBlock._branch_ops = staticmethod(unknown)
    try:
        return fn()
    finally:
        block_adjoints.LinearBlock._branch_ops = staticmethod(original)


def analysis_share(settings: Settings, steps: int) -> tuple[float, float, int]:
    """(seconds in path_analysis, seconds training, analyses) over a run at the settings' cadence."""
    spent = [0.0, 0]
    paths = UnrolledPaths()

    class Timed:
        name = paths.name
        due = paths.due

        def __call__(self, trainer) -> None:
            t = time.perf_counter()
            paths(trainer)
            spent[0] += time.perf_counter() - t
            spent[1] += 1

    trainer = LockstepTrainer(settings.with_changes(steps=steps), recorders=[Timed()])
    t = time.perf_counter()
    trainer.run()
    total = time.perf_counter() - t
    return spent[0], total - spent[0], spent[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps, for a smoke run")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    torch.set_num_threads(1)
    data = load_dataset("spirals", {})
    x, y = data.x_train[:256], data.y_train[:256]
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, one torch thread; best of {reps}")

    s = Settings(models=("resnet-66",)).checked()
    net = trained_net("resnet-66", s, data, steps=20)
    first = best_of(lambda: path_gradients(net, x, y), 1)
    full = best_of(lambda: path_gradients(net, x, y, tol=0), reps)
    cut = best_of(lambda: path_gradients(net, x, y), reps)
    grad = best_of(lambda: input_gradient(net, x, y), reps)
    func = with_torch_func(lambda: best_of(lambda: path_gradients(net, x, y, tol=0), max(2, reps // 2)))
    r = path_gradients(net, x, y)
    print("1. resnet-66 (32 blocks), 256-point probe")
    print(f"   decomposition, all 33 lengths       : {full * 1e3:7.1f} ms   (goal <= 100 ms; first call {first * 1e3:.0f} ms)")
    print(f"   decomposition, cutoff at tol 1e-4   : {cut * 1e3:7.1f} ms   (cutoff {r.cutoff}, residual {r.residual:.1e})")
    print(f"   baseline: autograd input gradient   : {grad * 1e3:7.1f} ms   (ratio {full / grad:.1f}x for 33 gradients)")
    print(f"   same through torch.func vjp + vmap  : {func * 1e3:7.1f} ms   ({func / full:.1f}x the hand-written maps)")

    s = get_preset("thousand-layers").settings()
    net = trained_net("resnet-1002", s, data, steps=3 if args.quick else 10)
    cold = best_of(lambda: path_gradients(net, x, y), max(1, reps // 3))
    r = path_gradients(net, x, y)
    hinted = best_of(lambda: path_gradients(net, x, y, start_length=r.cutoff), max(1, reps // 3))
    both = best_of(lambda: analyse_paths(net, x, y, start_length=r.cutoff), max(1, reps // 3))
    grad = best_of(lambda: input_gradient(net, x, y), max(1, reps // 3))
    print("2. resnet-1002 (500 pre-activation blocks), 256-point probe")
    print(f"   decomposition from cold (pilot)     : {cold:7.2f} s    (goal <= 3 s; cutoff {r.cutoff}, "
          f"residual {r.residual:.1e}, mean length {r.mean_length:.1f} of n/2 = {r.binomial_mean:g})")
    print(f"   with last cutoff as a hint          : {hinted:7.2f} s")
    print(f"   + Veit et al.'s sampled estimate    : {both:7.2f} s    (what the live analysis runs)")
    print(f"   baseline: autograd input gradient   : {grad:7.2f} s")

    print("3. live analysis at paths_every = 50 (time in path_analysis / time training)")
    for name, steps in (("degradation", 150 if args.quick else 400), ("thousand-layers", 60 if args.quick else 150)):
        settings = get_preset(name).settings(paths_every=50)
        spent, training, count = analysis_share(settings, steps)
        print(f"   {name:16} {steps:4} steps: {spent:6.2f} s in {count} analyses / {training:6.2f} s training "
              f"= {spent / training:5.1%}   (goal < 10 %)")


if __name__ == "__main__":
    main()
