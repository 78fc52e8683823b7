"""A trainer that runs a turn at a time: the dashboard's runs, in the worker processes the whole
class shares.

One step of a deep run with its analyses can take seconds (six 2002-layer nets evaluated, mapped and
path-analysed every step: 19.7 s), and a classmate's run on the same process waited all of it. So
each run's ``LockstepTrainer`` lives in a thread of its own (a ``slicing.SlicedThread``) that runs only
during ``turn(n, budget_s)``: it steps towards its target and gives the process back once the turn's
time is spent, at the end of a step or, where its steps are slow (over ``SLOW_STEP_S``), at the next
call into this project's code, in the middle of a step's analyses if need be (``SlicedThread.
preemptible``). A turn is then bounded in time whatever a step costs, and the parent shares the
process by the time each run used (``used_s``, the process's CPU time in the turn).

Between turns the trainer is either at a step's end (``mid`` False: settings may change, analyses
may be asked for, as between the steps of any trainer) or in the middle of one (``mid`` True: the
parent only gives it more turns until it is at an end again). Built in its thread too (the
analyses of step 0 are a step's). Nothing runs in two threads at once.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from resnet_core.remote.slicing import SlicedThread
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.training.member_stacks import MemberStacks

SLOW_STEP_S = 0.05  # a step slower than this (with its analyses) may be paused in its middle


class TrainerInTurns:
    """``build()`` (a LockstepTrainer) in a thread of its own, stepped a turn at a time."""

    def __init__(self, build: Callable[[], LockstepTrainer]):
        self._build = build
        self.trainer: LockstepTrainer | None = None
        self.target = 0
        self.completed = 0              # steps done, their analyses included
        self.step_s = 0.0               # the CPU time of the last step done, with its analyses
        self.mid = True                 # built in the first turns: not at a step's end before that
        self.thread = SlicedThread(self._main, name="trainer-in-turns")

    @property
    def later(self) -> bool:
        """At a step's end, with step 0's analyses held back to record (``answer_first``)."""
        return self.trainer is not None and not self.mid and self.trainer.later

    def turn(self, to: int, budget_s: float) -> float:
        """Step towards step ``to`` (finishing the step under way first, whatever ``to`` says) for
        about ``budget_s``; the process's CPU time it used. Raises what the trainer raised. A turn
        that finds step 0's analyses held back (``later``) records them and takes no step: the turn
        after the first step's, so that one came first."""
        if self.later:
            cpu = time.thread_time()
            self.trainer.record_later()  # here: the trainer's thread waits at a step's end
            return time.thread_time() - cpu
        self.target = max(to, self.completed + (1 if self.mid and self.trainer is not None else 0))
        self.thread.run_slice(budget_s)
        if self.thread.done and self.thread.error is not None:
            raise self.thread.error
        return self.thread.used_s

    def trainer_at_rest(self) -> LockstepTrainer:
        """The trainer, between two steps: for a change of setting or an analysis asked for."""
        if self.trainer is None or self.mid:
            raise ValueError("the trainer is in the middle of a step: give it a turn first")
        return self.trainer

    def step_here(self) -> float:
        """One step in the calling thread, the trainer's own waiting at a step's end (a quick step:
        see ``group_turn``); its CPU time. Raises what the step raised."""
        trainer = self.trainer_at_rest()
        cpu = time.thread_time()
        self.mid = True
        trainer.train_step()
        self.step_s = time.thread_time() - cpu
        self.mid, self.completed = False, trainer.step
        return self.step_s

    def close(self) -> None:
        """Stop the thread (at its next pause) and let the trainer go."""
        self.thread.cancel()
        self.trainer = None

    def _main(self, report: Callable[[Any], None]) -> None:
        self.thread.preemptible(True)  # building and step 0's analyses: as slow as a step can be
        trainer = self.trainer = self._build()
        slow = True
        while True:
            self.mid, self.completed = False, trainer.step
            while trainer.done or trainer.step >= self.target:
                self.thread.pause_here()
            if self.thread.spent() and trainer.prepared is None:
                self.thread.pause_here()  # the turn is spent: at a step's end, where it is cheapest
                continue  # (a step whose passes a stack did already is taken at once: see group_turn)
            self.mid = True
            started, cpu = time.perf_counter(), time.thread_time()
            trainer.train_step()
            self.step_s = time.thread_time() - cpu  # its own time, however many turns it took
            now_slow = time.perf_counter() - started > SLOW_STEP_S
            if now_slow != slow:
                self.thread.preemptible(now_slow)
                slow = now_slow


def group_turn(members: dict[str, tuple[TrainerInTurns, int]], stacks: MemberStacks, budget_s: float,
               cut: Callable[[], bool] = lambda: False) -> tuple[dict[str, float], dict[str, BaseException]]:
    """One turn for several built trainers at once (id -> (trainer in turns, step to go towards):
    the dashboard's runs of one shape), stepped in lockstep for about ``budget_s``: at each step the
    passes of the models that share a shape are done in ``stacks``, then every trainer takes its
    step (its update, evaluation and analyses): a trainer whose last step was quick (under
    ``SLOW_STEP_S``) in this thread, each switch of threads costing as much as a small net's step on a
    loaded machine; one whose steps are slow in its own thread, which may pause it in the middle of
    its step once the turn is spent, as in a turn of its own. A step under way is finished first.
    ``cut()`` true (the parent asked: ``remote/turn_cut.py``) spends the turn at once: it ends at the
    end of the step under way, each slow member pausing where it can, after one step at least. Each
    one's part of the process's CPU time by id, and what any of them raised (that one stops taking part)."""
    used = dict.fromkeys(members, 0.0)
    errors: dict[str, BaseException] = {}
    deadline = time.perf_counter() + budget_s

    def left() -> float:
        return 0.0 if cut() else max(deadline - time.perf_counter(), 0.0)

    def step(key: str, m: TrainerInTurns, share: float = 0.0) -> None:
        try:
            if m.mid or m.later:  # what is under way (being built, a step paused mid-way, step 0's analyses)
                used[key] += m.turn(m.completed, left())
            elif m.step_s <= SLOW_STEP_S:  # quick: here, without two thread switches
                used[key] += share + m.step_here()
            else:  # slow (its analyses, a deep net): in its thread, which may pause it mid-way
                used[key] += share + m.turn(m.completed + 1, left())
        except Exception as exc:  # noqa: BLE001 - its own error, reported in its own part of the reply
            errors[key] = exc

    stepped = False
    while True:
        for key, (m, _) in members.items():
            if (m.mid or m.later) and key not in errors:  # under way, being built, or held back: finished first
                step(key, m)
        due = {key: m for key, (m, to) in members.items() if key not in errors and m.trainer is not None
               and not m.mid and m.completed < to and not m.trainer.done}
        if not due or time.perf_counter() >= deadline or (stepped and cut()):
            return used, errors
        stepped = True
        cpu = time.process_time()
        stacks.prepare([m.trainer for m in due.values()])
        share = (time.process_time() - cpu) / len(due)
        for key, m in due.items():  # each takes the step prepared for it, at once however little time is left
            step(key, m, share)
