"""Thousand-layers: how far a walk written in Python can get. CPU ms a step, one thread, one
process, rounds alternated:

- the bare eager loop (``nn.Module`` calls, autograd, ``torch.optim.SGD``), what one would write;
- the written-out pass (``LockstepTrainer``, probes every 5 steps, as the preset trains);
- the floor: the kernel calls of that pass's block stack (BN, ReLU, linear, the shortcut's add;
  backward the two ``mm``s, the transpose, ReLU's and BN's backward, the add), made in a straight
  Python loop with no bookkeeping at all: no optimizer, no stem or head, no gradients handed to
  parameters, no probes.

Issue 19 asks the fast path for >= 2.5x the bare loop. Where bare / floor is itself near 2.5, no
walk that calls these kernels one by one from Python can get there: it needs fewer calls (a
compiled or fused walk), not less Python between them.

    .venv/bin/python bench/op_floor.py [--rounds 3] [--steps 10]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from resnet_core.nets.models import build_model
from resnet_core.presets import get_preset
from resnet_core.training.lockstep import BatchStream, LockstepTrainer

BN_BACKWARD = torch.ops.aten.native_batch_norm_backward.default
RELU_BACKWARD = torch.ops.aten.threshold_backward.default


def cpu_ms(step, steps: int) -> float:
    started = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - started) / steps * 1000


def floor_step(layers: int, batch: int, width: int):
    """One forward and backward of ``layers`` pre-activation units (a shortcut every second one)."""
    x = torch.randn(batch, width)
    weights = [torch.randn(width, width) * 0.1 for _ in range(layers)]
    gammas, betas = [torch.ones(width) for _ in range(layers)], [torch.zeros(width) for _ in range(layers)]
    means, variances = [torch.zeros(width) for _ in range(layers)], [torch.ones(width) for _ in range(layers)]
    mask = [True, True, True]

    def step() -> None:
        h, saved = x, []
        for i in range(layers):
            out, mean, invstd = torch.native_batch_norm(h, gammas[i], betas[i], means[i], variances[i], True, 0.1, 1e-5)
            r = torch.relu(out)
            saved.append((h, mean, invstd, r))
            y = torch._C._nn.linear(r, weights[i])
            h = y + h if i % 2 else y
        g = torch.ones_like(h)
        for i in range(layers - 1, -1, -1):
            h_in, mean, invstd, r = saved[i]
            g.t().mm(r)  # the weight's gradient
            g_in = RELU_BACKWARD(g.mm(weights[i]), r, 0)
            g_in = BN_BACKWARD(g_in, h_in, gammas[i], means[i], variances[i], mean, invstd, True, 1e-5, mask)[0]
            g = g_in + g if i % 2 else g_in
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps a figure, each way, each round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = get_preset("thousand-layers").settings().with_changes(eval_every=100_000, paths_every=0, steps=100_000)
    trainer = LockstepTrainer(settings)
    data, spec = trainer.data, settings.model_specs[0]
    net = build_model(spec, settings, data.input_shape, data.n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum)
    batches = BatchStream(len(data.x_train), settings.batch_size, settings.seed)

    def bare() -> None:
        idx = batches.next()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()

    floor = floor_step(len(trainer.models[spec.name].blocks) * settings.branch_layers, settings.batch_size,
                       settings.width)
    ways = {"bare eager loop": bare, "written-out pass": trainer.train_step, "floor of its kernel calls": floor}
    for step in ways.values():
        cpu_ms(step, 2)  # first calls
    print(f"{spec.name} ({settings.block}-activation, width {settings.width}, batch {settings.batch_size}), "
          f"probes every {settings.probe_every}; CPU ms a step, {args.steps} steps a figure")
    for _ in range(args.rounds):
        ms = {name: cpu_ms(step, args.steps) for name, step in ways.items()}
        bare_ms = ms["bare eager loop"]
        print("  " + ", ".join(f"{name} {v:.1f}" for name, v in ms.items())
              + f";  bare / written-out {bare_ms / ms['written-out pass']:.2f}x, "
              f"bare / floor {bare_ms / ms['floor of its kernel calls']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
