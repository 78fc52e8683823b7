"""Distinct runs share kernels (issue 23): steps per second per session for N distinct runs of the
degradation lesson (seeds and learning rates differ) in one worker process, as the server's
scheduler drives it: taking their turns alone (one ``run`` turn each, round robin: each model's
passes its own, the unstacked path) and together (one ``run_group`` turn: their models of one
shape trained in shared stacks, a run's twins plain-56 and resnet-56 in one), alternated in the
same run on the same trainers, with every analysis the app records on.

    .venv/bin/python bench/bench_member_stacks.py [--sessions 10] [--seconds 6] [--rounds 2]

Also: the same with bare steps (no analyses, no probes: the trainer's training pass alone); one
session by itself, with analyses and bare (its twins are a pair, and a worker stacks from three
members on: nothing stacks); and the passes alone in this process, four ways (each model its own,
twins apart, twins together with pairs stacked, and as the workers stack; CPU time, alternated); and the ceiling:
with every analysis on, how much of a stacked step is each run's own work, and so how much faster
than their own passes the runs could be if sharing made the passes free (``--ceiling``: that alone).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

from resnet_core.presets import get_preset
from resnet_core.remote.worker_process import WorkerProcess
from resnet_core.sizing.budget import server_worker_limit_mb

LRS = (0.05, 0.02, 0.1, 0.03, 0.07)
FAR = 10**9  # a step no run gets to: every turn is spent training


def lesson(bare: bool):
    """The degradation lesson's settings, long enough never to end; ``bare``: no evaluations, layer
    probes or analyses (the trainer's training pass alone)."""
    base = get_preset("degradation").settings().with_changes(steps=100_000)
    return base.with_changes(probe_every=100_000, eval_every=100_000, paths_every=0) if bare else base


class Sessions:
    """N runs in turns in one worker process."""

    def __init__(self, worker: WorkerProcess, n: int, bare: bool):
        self.worker, self.ids, self.steps = worker, [f"s{i}" for i in range(n)], {}
        base = lesson(bare)
        for i, key in enumerate(self.ids):
            settings = base.with_changes(seed=i, lr=LRS[i % len(LRS)])
            reply = worker.request(cmd="init", id=key, settings=settings.to_dict(), turns=True, budget_s=1.0)
            while reply.get("mid", True):
                reply = worker.request(cmd="run", id=key, to=0, budget_s=1.0)
            self.steps[key] = reply["step"]
        self.run_alone(0.5)  # past the first calls of every kernel
        self.run_together(0.5)

    def run_alone(self, seconds: float, quantum: float = 0.1) -> float:
        """Steps per second per session, each run taking its own turns, round robin."""
        start, began = dict(self.steps), time.perf_counter()
        while time.perf_counter() - began < seconds:
            for key in self.ids:
                self.steps[key] = self.worker.request(cmd="run", id=key, to=FAR, budget_s=quantum)["step"]
        return self._rate(start, began)

    def run_together(self, seconds: float, quantum: float = 0.1) -> float:
        """Steps per second per session, the runs taking their turns together."""
        start, began = dict(self.steps), time.perf_counter()
        while time.perf_counter() - began < seconds:
            reply = self.worker.request(cmd="run_group", members=[{"id": k, "to": FAR} for k in self.ids],
                                        budget_s=min(quantum * len(self.ids), 0.5))
            self.stacks = reply["stacks"]
            for key, part in reply["members"].items():
                self.steps[key] = part["step"]
        return self._rate(start, began)

    def _rate(self, start: dict[str, int], began: float) -> float:
        elapsed = time.perf_counter() - began
        return sum(self.steps[k] - start[k] for k in self.ids) / len(self.ids) / elapsed


def measure(n: int, bare: bool, seconds: float, rounds: int) -> None:
    worker = WorkerProcess(server_worker_limit_mb(1))
    try:
        worker.request(cmd="warm")
        sessions = Sessions(worker, n, bare)
        alone, together = [], []
        for _ in range(rounds):
            alone.append(sessions.run_alone(seconds))
            together.append(sessions.run_together(seconds))
        kind = "bare steps" if bare else "with analyses"
        print(f"{n} sessions, {kind}: steps/s per session alone {', '.join(f'{r:.1f}' for r in alone)}; "
              f"together {', '.join(f'{r:.1f}' for r in together)}; speed-up "
              f"{sum(together) / sum(alone):.2f}x (stacks {sessions.stacks})", flush=True)
    finally:
        worker.close()


def measure_passes(runs: int, steps: int, rounds: int) -> None:
    """Bare steps of ``runs`` runs in this process (no worker, no turns: the passes and updates alone),
    four ways alternated: each model its own passes; in stacks with a plain net and its residual twin
    apart, pairs stacked too (``MemberStacks(twins=False, smallest=2)``: the code before twins shared);
    the twins in one stack, pairs too (``smallest=2``); the twins in one stack, from three members on
    (``MemberStacks()``, what the workers do)."""
    import torch

    from resnet_core.training.lockstep import LockstepTrainer
    from resnet_core.training.member_stacks import MemberStacks

    torch.set_num_threads(1)
    base = lesson(bare=True)
    trainers = [LockstepTrainer(base.with_changes(seed=i, lr=LRS[i % len(LRS)])) for i in range(runs)]

    def own() -> None:
        for t in trainers:
            t.train_step()

    def stacked(stacks: MemberStacks):
        def step() -> None:
            stacks.prepare(trainers)
            own()
        return step

    ways = {"own passes": lambda: own, "twins apart, pairs too": lambda: stacked(MemberStacks(False, smallest=2)),
            "twins together, pairs too": lambda: stacked(MemberStacks(smallest=2)),
            "twins together, from three": lambda: stacked(MemberStacks())}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, make in ways.items():
            step = make()
            step()  # a new MemberStacks builds its stacks: not timed
            cpu = time.process_time()
            for _ in range(steps):
                step()
            rates[name].append(steps / (time.process_time() - cpu))
    base_rate = sum(rates["own passes"])
    print(f"{runs} runs, bare steps in one process: steps/s per run (CPU time) "
          + "; ".join(f"{k} {', '.join(f'{r:.1f}' for r in v)} ({sum(v) / base_rate:.2f}x)" for k, v in rates.items()),
          flush=True)


def measure_ceiling(runs: int, steps: int, rounds: int) -> None:
    """How far sharing the passes can take ``runs`` runs with every analysis on, in this process's
    CPU time: each run's own passes against the stacks, alternated, with every analysis the app
    records (its cadence, the runs apart in their steps as a class's are), and again bare. What a
    stacked step costs beyond its bare passes is each run's own work (its evaluations, analyses,
    layer probes), the same whoever does its passes: so even passes that cost nothing would leave
    the runs at most (own passes with analyses) / (that work) times faster."""
    import torch

    from resnet_core.analysis.recorders import standard
    from resnet_core.training.lockstep import LockstepTrainer
    from resnet_core.training.member_stacks import MemberStacks

    torch.set_num_threads(1)
    cost: dict[tuple[bool, bool], list[float]] = {}  # (bare, stacked) -> CPU s per run and step
    for bare in (False, True):
        base = lesson(bare)
        trainers = [LockstepTrainer(base.with_changes(seed=i, lr=LRS[i % len(LRS)]), recorders=() if bare else standard())
                    for i in range(runs)]
        for i, t in enumerate(trainers):
            for _ in range(7 * i):  # a class's runs started apart: their analyses fall on different steps
                t.train_step()
        stacks = MemberStacks()
        for _ in range(rounds):
            for stacked in (False, True):
                def step() -> None:
                    if stacked:
                        stacks.prepare(trainers)
                    for t in trainers:
                        t.train_step()
                step()
                cpu = time.process_time()
                for _ in range(steps):
                    step()
                cost.setdefault((bare, stacked), []).append((time.process_time() - cpu) / steps / runs)
    ms = {k: [1e3 * v for v in vs] for k, vs in cost.items()}
    alone, together, bare_together = (min(ms[k]) for k in ((False, False), (False, True), (True, True)))
    own_work = together - bare_together
    print(f"{runs} runs in one process, CPU ms per run and step: every analysis, own passes "
          f"{', '.join(f'{v:.1f}' for v in ms[False, False])}, stacked {', '.join(f'{v:.1f}' for v in ms[False, True])} "
          f"({alone / together:.2f}x); bare, own passes {', '.join(f'{v:.1f}' for v in ms[True, False])}, stacked "
          f"{', '.join(f'{v:.1f}' for v in ms[True, True])} ({min(ms[True, False]) / bare_together:.2f}x); each run's "
          f"own work {own_work:.1f} ms a step, so with passes that cost nothing at most {alone / own_work:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=6.0, help="each measurement's length")
    parser.add_argument("--rounds", type=int, default=2, help="alone and together, alternated this many times")
    parser.add_argument("--ceiling", action="store_true", help="only the in-process ceiling (measure_ceiling)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if args.ceiling:
        return measure_ceiling(args.sessions, 60, args.rounds)
    measure(args.sessions, False, args.seconds, args.rounds)
    measure(args.sessions, True, args.seconds, args.rounds)
    measure(1, False, args.seconds, args.rounds)
    measure(1, True, args.seconds, args.rounds)
    measure_passes(1, 60, args.rounds)
    measure_passes(args.sessions, 10, args.rounds)
    measure_ceiling(args.sessions, 60, args.rounds)
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
