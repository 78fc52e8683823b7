"""Trainer speed, each figure against a baseline measured in the same run.

    .venv/bin/python bench/bench_trainer.py [--steps 400] [--quick]

1. The instrumented lockstep trainer (worker processes, one torch thread each, every probe on)
   against a bare eager PyTorch loop of the same models on the same batches with torch's
   default threads: ratio of training wall time (goal <= 0.6).
2. What the probes cost: a step with layer probes against one without, one process, one thread
   (goal <= 10 % at the default cadence).
3. Time until the degradation preset shows its separation (plain-56 >= plain-20 + 10 points and
   resnet-56 <= plain-56 - 10 points, held at three evaluations in a row), from a cold start
   (goal <= 5 s).
4. The thousand-layers preset: steps per second, its training steps alone and as the preset runs
   (with its evaluations and path analyses), with the written-out MLP pass and with autograd,
   against a bare eager loop of the same net.
"""
from __future__ import annotations

import argparse
import os
import time


import torch
import torch.nn.functional as F

from resnet_core.training.tensors import load_dataset
from resnet_core.training.lockstep import BatchStream, LockstepTrainer
from resnet_core.analysis.recorders import standard
from resnet_core.nets.models import build_model
from resnet_core.scheduling.parallel_trainer import ParallelTrainer
from resnet_core.presets import get_preset


def bare_loop(settings, steps: int) -> float:
    """The baseline: what one would write by hand. Torch's default threads, no probes, no evals."""
    data = load_dataset(settings.dataset, settings.dataset_args)
    nets = [build_model(s, settings, data.input_shape, data.n_classes) for s in settings.model_specs]
    opts = [torch.optim.SGD(n.parameters(), lr=settings.lr, momentum=settings.momentum) for n in nets]
    batches = BatchStream(len(data.x_train), settings.batch_size, settings.seed)
    started = time.perf_counter()
    for _ in range(steps):
        idx = batches.next()
        x, y = data.x_train[idx], data.y_train[idx]
        for net, opt in zip(nets, opts):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
    return time.perf_counter() - started


def instrumented(settings, steps: int, workers: int) -> tuple[float, float]:
    """(start-up s, training s) of the lockstep trainer in worker processes, all probes on."""
    t0 = time.perf_counter()
    trainer = ParallelTrainer(settings.with_changes(steps=steps), workers=workers)
    t1 = time.perf_counter()
    trainer.run()
    t2 = time.perf_counter()
    trainer.close()
    return t1 - t0, t2 - t1


def probe_cost(settings, reps: int = 5, chunk: int = 40) -> tuple[float, float]:
    """ms per step with probes every step and with none, one process, one thread, interleaved."""
    torch.set_num_threads(1)
    trainer = LockstepTrainer(settings.with_changes(steps=100_000, eval_every=100_000), recorders=standard())
    best = {1: float("inf"), 100_000: float("inf")}
    for _ in range(reps):
        for every in best:
            trainer.settings = trainer.settings.with_changes(probe_every=every)
            t = time.perf_counter()
            for _ in range(chunk):
                trainer.train_step()
            best[every] = min(best[every], (time.perf_counter() - t) / chunk * 1e3)
    torch.set_num_threads(os.cpu_count() or 1)
    return best[1], best[100_000]


def time_to_separation(settings, workers: int, hold: int = 3) -> tuple[float | None, int | None]:
    """Seconds from a cold start until the separation has held at ``hold`` evaluations in a row
    (one lucky evaluation is not something a class can see)."""
    t0 = time.perf_counter()
    trainer = ParallelTrainer(settings, workers=workers)
    shallow, deep, res = (s.name for s in settings.model_specs)
    streak = 0
    try:
        while not trainer.done:
            trainer.train_step()
            if trainer.step % settings.eval_every:
                continue
            m = trainer.record.metrics_frame()
            last = m[m.step == trainer.step].set_index("model").train_error
            streak = streak + 1 if last[deep] >= last[shallow] + 0.10 and last[res] <= last[deep] - 0.10 else 0
            if streak == hold:
                return time.perf_counter() - t0, trainer.step
        return None, None
    finally:
        trainer.close()


def thousand_layers(steps: int, engine: str = "", analyses: bool = True) -> float:
    """Steps per second of resnet-1002 in one worker process, after two warm-up steps. ``analyses``:
    the preset as it runs (evaluations every 10 steps, the path analysis every 50, decision maps);
    without, its training steps alone (probes at its cadence). ``engine`` (RESIDUAL_LAB_ENGINE, read
    by the worker as it starts): "" the written-out pass, "autograd" without it."""
    settings = get_preset("thousand-layers").settings()
    if not analyses:
        settings = settings.with_changes(eval_every=100_000, paths_every=0)
    before = os.environ.get("RESIDUAL_LAB_ENGINE")
    os.environ["RESIDUAL_LAB_ENGINE"] = engine
    try:
        trainer = ParallelTrainer(settings.with_changes(steps=steps + 2), workers=1)
    finally:
        os.environ["RESIDUAL_LAB_ENGINE"] = before or ""
    trainer.train_step(2)  # warm-up
    t = time.perf_counter()
    trainer.train_step(steps)
    rate = steps / (time.perf_counter() - t)
    trainer.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke run")
    args = parser.parse_args()
    steps = 60 if args.quick else args.steps
    settings = get_preset("degradation").settings()
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, threads by default {torch.get_num_threads()}")
    print(f"models: {', '.join(settings.models)}; {steps} steps, batch {settings.batch_size}")

    bare = bare_loop(settings, steps)
    start, train = instrumented(settings.with_changes(eval_every=steps, paths_every=0), steps, workers=2)
    _, full = instrumented(settings, steps, workers=2)
    print(f"1. bare eager loop, default threads      : {bare:6.2f} s")
    print(f"   lockstep, 2 workers, layer probes     : {train:6.2f} s training (+{start:.2f} s start-up)")
    print(f"   ratio (training)                      : {train / bare:6.2f}   (goal <= 0.6)")
    print(f"   ratio (with start-up)                 : {(train + start) / bare:6.2f}")
    print(f"   + evaluations every {settings.eval_every}, paths every {settings.paths_every}, decision maps: "
          f"{full:.2f} s, ratio {full / bare:.2f}")

    with_probes, without = probe_cost(settings)
    default_every = settings.probe_every
    print(f"2. step with probes / without      : {with_probes:.2f} / {without:.2f} ms "
          f"(+{with_probes / without - 1:.0%} on a probed step; "
          f"+{(with_probes / without - 1) / default_every:.0%} at the default cadence of every {default_every})")

    seconds, step = time_to_separation(settings, workers=2)
    shown = f"{seconds:.1f} s (held from step {step - 2 * settings.eval_every} to {step}; cold start incl. worker start-up)" if seconds else "not within the run"
    print(f"3. degradation separation visible  : {shown}   (goal <= 5 s)")

    n = 10 if args.quick else 40
    bare_1k = bare_loop(get_preset("thousand-layers").settings(), n)
    engines = ("", "autograd")
    steps_only = [thousand_layers(n, engine=e, analyses=False) for e in engines]
    preset = [thousand_layers(n, engine=e) for e in engines]
    print("4. thousand-layers (resnet-1002), steps/s, written-out pass / autograd "
          f"(goal >= 2.5x the bare eager loop, {2.5 * n / bare_1k:.1f}):")
    print(f"   training steps, probes every 5    : {' / '.join(f'{r:.1f}' for r in steps_only)}"
          f"   (bare eager loop, default threads, no probes: {n / bare_1k:.1f})")
    print(f"   the preset as it runs (evaluations every 10, paths every 50): {' / '.join(f'{r:.1f}' for r in preset)}")


if __name__ == "__main__":
    main()
