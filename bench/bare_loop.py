"""The baseline a user would write by hand, as a whole process: the same models, data and batches as
``python -m resnet_core train``, torch's default threads and optimizer, no probes, no evaluations.

    .venv/bin/python bench/bare_loop.py [--models plain-20,plain-56,resnet-56] [--steps 300]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from resnet_core.data import load_arrays
from resnet_core.nets.models import build_model
from resnet_core.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="plain-20,plain-56,resnet-56")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    settings = Settings(models=tuple(args.models.split(",")), steps=args.steps, seed=args.seed).checked()
    a = load_arrays(settings.dataset, settings.dataset_args)
    x = torch.from_numpy(a.x_train.astype("float32"))
    y = torch.from_numpy(a.y_train.astype("int64"))
    nets = [build_model(s, settings, tuple(x.shape[1:]), int(a.n_classes)) for s in settings.model_specs]
    opts = [torch.optim.SGD(n.parameters(), lr=settings.lr, momentum=settings.momentum) for n in nets]
    gen = torch.Generator().manual_seed(settings.seed)  # the trainer's BatchStream: the same batches
    order, pos, batch = torch.empty(0, dtype=torch.long), 0, min(settings.batch_size, len(x))
    for _ in range(settings.steps):
        if pos + batch > len(order):
            order, pos = torch.randperm(len(x), generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        xb, yb = x[idx], y[idx]
        for net, opt in zip(nets, opts):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
    print(f"{settings.steps} steps of {', '.join(settings.models)} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
