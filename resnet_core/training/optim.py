"""SGD with momentum and Adam, as ``torch.optim.SGD(fused=True)`` and ``torch.optim.Adam(fused=True)``
compute them: the same fused kernels (``torch._fused_sgd_``, ``torch._fused_adam_``), called with
the same arguments and the same state, so a run is bit for bit the same (tests/test_optim.py).

Why not torch.optim itself: building the first ``torch.optim`` optimizer of a process imports
``torch._dynamo`` (0.7-1.2 s of one core here), which every CLI run and every worker process paid
before its first step, for nothing it uses. Fused, because a 1002-layer net has 3000 small tensors:
the per-tensor loop was a sixth of every step, and fused is a further ~4x faster than the foreach
path on a CPU (SGD 5 ms vs 18-25 ms a step; Adam 14 vs 50 ms).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch


class FusedOptimizer:
    """One parameter group, its settings in ``param_groups[0]`` as torch.optim keeps them (the
    dashboard's learning-rate slider changes ``lr`` there)."""

    def __init__(self, params: Iterable[torch.Tensor], **group: Any):
        self.params = list(params)
        self.param_groups = [group]
        for p in self.params:
            if p.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
                raise ValueError(f"the fused optimizers take floating-point parameters, not {p.dtype}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _with_grads(self) -> list[int]:
        """Parameters that have a gradient this step (torch.optim skips the others, state and all)."""
        return [i for i, p in enumerate(self.params) if p.grad is not None]


class SGD(FusedOptimizer):
    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        group, live = self.param_groups[0], self._with_grads()
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        buffers = [self.momentum_buffers[i] for i in live]
        momentum = group["momentum"]
        first = momentum != 0 and all(b is None for b in buffers)
        if first:  # torch.optim's first step: empty buffers that the kernel fills with the gradients
            buffers = [torch.empty_like(g) for g in grads]
        torch._fused_sgd_(params, grads, [] if momentum == 0 else buffers, weight_decay=group["weight_decay"],
                          momentum=momentum, lr=group["lr"], dampening=0.0, nesterov=False, maximize=False,
                          is_first_step=first, grad_scale=None, found_inf=None)
        if momentum != 0:
            for i, b in zip(live, buffers):
                self.momentum_buffers[i] = b


class Adam(FusedOptimizer):
    def __init__(self, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
        self.state: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        group, live = self.param_groups[0], self._with_grads()
        if not live:
            return
        for i in live:
            if self.state[i] is None:  # (step, exp_avg, exp_avg_sq), as torch.optim's fused Adam makes them
                p = self.params[i]
                self.state[i] = (torch.zeros((), dtype=torch.float32, device=p.device),
                                 torch.zeros_like(p, memory_format=torch.preserve_format),
                                 torch.zeros_like(p, memory_format=torch.preserve_format))
        params = [self.params[i] for i in live]
        steps, exp_avgs, exp_avg_sqs = (list(t) for t in zip(*(self.state[i] for i in live)))
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                           lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                           eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
