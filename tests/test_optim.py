"""The trainer's optimizers give exactly what torch.optim's fused SGD and Adam give, and building one
does not import torch._dynamo (the second a worker process used to pay before its first step)."""
import subprocess
import sys

import pytest
import torch

from resnet_core.training import optim


def params_and_grads(seed: int, steps: int):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(32, 32), (32,), (3, 32), (1,)]
    params = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(steps)]
    return params, grads


@pytest.mark.parametrize(("kind", "settings"), [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}),
    ("sgd", {"lr": 0.1, "momentum": 0.0, "weight_decay": 1e-4}),
    ("adam", {"lr": 1e-3, "weight_decay": 0.0}),
    ("adam", {"lr": 3e-3, "weight_decay": 1e-4}),
])
def test_each_step_equals_torch_optim_fused(kind, settings):
    params, grads = params_and_grads(0, 6)
    ours = [p.clone().requires_grad_() for p in params]
    theirs = [p.clone().requires_grad_() for p in params]
    mine = (optim.SGD if kind == "sgd" else optim.Adam)(ours, **settings)
    reference = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)(theirs, fused=True, **settings)
    for step, g in enumerate(grads):
        for opt, ps in ((mine, ours), (reference, theirs)):
            opt.zero_grad(set_to_none=True)
            for i, (p, gi) in enumerate(zip(ps, g)):
                if not (step == 2 and i == 1):  # one parameter without a gradient this step: skipped, state and all
                    p.grad = gi.clone()
            if step == 4:  # the dashboard's learning-rate slider, mid-run
                opt.param_groups[0]["lr"] = settings["lr"] / 2
            opt.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), f"step {step}"


def test_building_and_stepping_an_optimizer_imports_no_dynamo():
    code = ("import sys, torch; from resnet_core.training.optim import SGD, Adam\n"
            "w = torch.zeros(3, requires_grad=True); w.grad = torch.ones(3)\n"
            "SGD([w], lr=0.1, momentum=0.9).step(); Adam([w], lr=0.1).step()\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
