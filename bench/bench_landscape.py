"""Loss-landscape speed: a 2D 21x21 grid around a 56-layer MLP (goal <= 10 s), against the
baseline of one plain forward pass over the same points (what a grid point costs at least).

    .venv/bin/python bench/bench_landscape.py [--steps 400] [--grid 21] [--depth 56]

The twins are the degradation preset's plain-56 and resnet-56, trained --steps steps (the
training time is printed, not part of the grid figure). One torch thread, as in a worker.
The roughness beside each grid is printed too, as the panel shows it.
"""
from __future__ import annotations

import argparse
import time


import torch

from resnet_core.training.tensors import load_dataset
from resnet_core.analysis.landscape.compute import (filter_normalized_direction, loss_batch, loss_surface, mean_loss,
                                   roughness, train_twins)
from resnet_core.presets import get_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--grid", type=int, default=21)
    parser.add_argument("--depth", type=int, default=56)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = get_preset("degradation").settings()
    data = load_dataset(settings.dataset, settings.dataset_args)
    started = time.perf_counter()
    nets = train_twins(settings, args.depth, args.steps, data=data)
    print(f"trained plain-{args.depth} and resnet-{args.depth} for {args.steps} steps in "
          f"{time.perf_counter() - started:.1f} s")
    x, y = loss_batch(data, torch.device("cpu"))
    ranges = {}
    for name, net in nets.items():
        net.eval()
        mean_loss(net, x, y)  # warm up
        started = time.perf_counter()
        for _ in range(20):
            mean_loss(net, x, y)
        forward = (time.perf_counter() - started) / 20
        d1, d2 = filter_normalized_direction(net, 0), filter_normalized_direction(net, 1)
        started = time.perf_counter()
        _, _, grid = loss_surface(net, x, y, d1, d2, n=args.grid)
        seconds = time.perf_counter() - started
        r = roughness(grid)
        ranges[name] = r["loss_range"]
        print(f"{name:10} {args.grid}x{args.grid} grid on {len(x)} points: {seconds:5.2f} s (goal <= 10 s); "
              f"{seconds / args.grid**2 * 1e3:.1f} ms a point = {seconds / args.grid**2 / forward:.2f}x one forward "
              f"pass ({forward * 1e3:.1f} ms)")
        print(f"{'':10} loss at the trained weights {grid[args.grid // 2, args.grid // 2]:.3f}, range {r['loss_range']:.3g}, "
              f"non-convex points {r['nonconvex_fraction']:.0%}, local minima {r['local_minima']}")
    plain, resnet = (ranges[f"{f}-{args.depth}"] for f in ("plain", "resnet"))
    print(f"loss range, plain / residual: {plain / resnet:.3g}")


if __name__ == "__main__":
    main()
