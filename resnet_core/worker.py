"""A worker process: ``python -m resnet_core.worker``, driven over JSON lines: the one kind of process
that computes, for the dashboard's scheduler and the command line alike.

One process hosts the work of many sessions at once, each piece under the id its message names:
trainers (a ``LockstepTrainer`` over some or all of a run's models), stepped a few steps at a time,
and analysis jobs (``resnet_core.remote.job_kinds.JOB_KINDS``: a sweep's run, a loss landscape,
shattered gradients), run a time slice at a time (``resnet_core.remote.slicing``). Only one thing
runs at any moment, on one torch thread; the parent (a scheduler's host, the dashboard's or the
command line's: ``resnet_core/scheduling``) decides what runs next. Every reply carries what
that trainer recorded since its last reply.

Commands (``id`` defaults to "", which is how ``ParallelTrainer`` drives a process of its own):
  init {settings, only?}      build a trainer            step {n}              n steps
  run {n, budget_s}           steps until n or the budget is spent (at least one); with init's
                              turns: true, {to, budget_s}: a bounded turn towards step ``to``
                              (a trainer in turns, training/turns.py; its replies say ``mid``;
                              with init's answer_first: true, ``later`` while step 0's analyses wait)
  run_group {members: [{id, to}], budget_s}  a turn for several runs in turns at once, those
                              of one shape trained in shared stacks (training/member_stacks.py);
                              SIGUSR1 ends it early (remote/turn_cut.py), its reply then says cut
  set_lr {lr}, set_steps {steps}, drop
  call {method, kwargs, threads?}  one of REMOTE_METHODS, on ``threads`` torch threads (default 1)
  job {kind, args}            a sliced analysis job      slice {budget_s}      let it run a while
  cancel                      stop a job                 warm, ping
"""
from __future__ import annotations

import time
from typing import Any

import torch

from resnet_core import config
from resnet_core.errors import describe, is_user_error
from resnet_core.analysis import recorders
from resnet_core.records.events import ForwardingRecord
from resnet_core.remote.job_kinds import job_function
from resnet_core.remote.slicing import SlicedThread
from resnet_core.remote.worker_process import REMOTE_METHODS
from resnet_core.remote.transport import exit_now, serve
from resnet_core.remote.turn_cut import TurnCut
from resnet_core.settings import Settings
from resnet_core.sizing.budget import out_of_memory, out_of_memory_message
from resnet_core.training.headless import torch_threads
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.training.member_stacks import MemberStacks
from resnet_core.training.turns import TrainerInTurns, group_turn


def warm_up() -> dict[str, Any]:
    """Pay once, as the process starts, what the first run would otherwise pay on its first Train:
    torch's lazy imports (the optimizers, autograd's functional API for the path analysis) and the
    first calls of every kernel a step uses. The degradation preset is what a class opens with."""
    from resnet_core.presets import get_preset

    started = time.perf_counter()
    settings = get_preset("degradation").settings().with_changes(steps=2, eval_every=1, paths_every=1)
    trainer = LockstepTrainer(settings, record=ForwardingRecord(), recorders=recorders.standard())
    trainer.run()
    return {"warm_s": round(time.perf_counter() - started, 3)}


class _Tenants:
    """The process's side: trainers and jobs by id."""

    def __init__(self, cut: TurnCut | None = None) -> None:
        self.cut = cut if cut is not None else TurnCut()  # the parent's asking a group turn to end early
        self.trainers: dict[str, tuple[LockstepTrainer, ForwardingRecord]] = {}
        self.in_turns: dict[str, tuple[TrainerInTurns, ForwardingRecord]] = {}
        self.jobs: dict[str, SlicedThread] = {}
        self.stacks = MemberStacks()  # the runs in turns whose models share a shape train in these

    def __call__(self, msg: dict[str, Any], send) -> None:
        try:
            send({"ok": True, **self._handle(msg)})
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it
            if out_of_memory(exc):  # this process's own memory limit (transport.limit_memory): what to lower
                send({"ok": False, "error": out_of_memory_message(), "user": True})
            else:
                send({"ok": False, "error": describe(exc), "user": is_user_error(exc)})

    def _handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd, key = msg["cmd"], str(msg.get("id", ""))
        if cmd == "ping":
            return {}
        if cmd == "warm":
            return warm_up()
        if cmd in ("job", "slice", "cancel"):
            return self._job(cmd, key, msg)
        if cmd == "run_group":
            return self._run_group(msg)
        if cmd == "drop" or cmd == "init":
            turns = self.in_turns.pop(key, None)
            if turns is not None:
                turns[0].close()
                self.stacks.clear()  # its models may be in a stack: the next group turn stacks anew
            self.trainers.pop(key, None)
            if cmd == "drop":
                return {}
        if (cmd == "init" and msg.get("turns")) or key in self.in_turns:
            return self._in_turns(cmd, key, msg)
        started = time.perf_counter()
        reply: dict[str, Any] = {}
        if cmd == "init":
            record = ForwardingRecord()
            trainer = LockstepTrainer(Settings.from_dict(msg["settings"]), record=record,
                                      only=tuple(msg["only"]) if msg.get("only") else None,
                                      recorders=recorders.standard())
            self.trainers[key] = (trainer, record)
            reply = {"layer_names": record.layer_names, "config": record.config}
        elif key not in self.trainers:
            raise ValueError(f"no trainer {key!r} in this process: init it first")
        trainer, record = self.trainers[key]
        if cmd == "step":
            for _ in range(msg.get("n", 1)):
                if trainer.done:
                    break
                trainer.train_step()
        elif cmd == "run":
            self._run(trainer, int(msg.get("n", 1)), float(msg.get("budget_s", 0.1)))
        elif cmd == "set_lr":
            trainer.set_lr(msg["lr"])
        elif cmd == "set_steps":
            trainer.set_steps(msg["steps"])
        elif cmd == "call" and msg["method"] in REMOTE_METHODS:
            with torch_threads(int(msg.get("threads", 1))):
                trainer.call(msg["method"], **msg.get("kwargs", {}))
        elif cmd != "init":
            raise ValueError(f"unknown command {cmd!r}")
        return {"events": record.drain(), "step": trainer.step, "status": trainer.status, "wall_s": trainer.wall_s,
                "elapsed_s": round(time.perf_counter() - started, 5), **reply}

    def _in_turns(self, cmd: str, key: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A dashboard run's trainer, stepped a bounded turn at a time (``turns.py``): ``init`` and
        ``run`` are turns, and may leave it in the middle of a step (``mid``); the other commands
        find it at a step's end. Its first replies carry its config once it is built."""
        started, cpu = time.perf_counter(), time.process_time()
        if cmd == "init":
            record = ForwardingRecord()
            settings = Settings.from_dict(msg["settings"])
            first = bool(msg.get("answer_first"))  # a new run: its first step before step 0's analyses
            self.in_turns[key] = (TrainerInTurns(lambda: LockstepTrainer(settings, record=record, recorders=recorders.standard(),
                                                                             answer_first=first)), record)
        turns, record = self.in_turns[key]
        used = None
        if cmd in ("init", "run"):
            used = turns.turn(int(msg.get("to", 0)), float(msg.get("budget_s", 0.1)))
        elif cmd == "set_lr":
            turns.trainer_at_rest().set_lr(msg["lr"])
        elif cmd == "set_steps":
            turns.trainer_at_rest().set_steps(msg["steps"])
        elif cmd == "call" and msg["method"] in REMOTE_METHODS:
            turns.trainer_at_rest().call(msg["method"], **msg.get("kwargs", {}))
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return self._turn_reply(turns, record, started, time.process_time() - cpu if used is None else used)

    def _run_group(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A turn for several built runs in turns at once (``turns.group_turn``): those of one shape
        train as members of shared stacks. One part of the reply per run, as its own turn's reply
        (or its error); ``stacks``: the sizes of the stacks of the turn's last step."""
        started = time.perf_counter()
        members = {str(m["id"]): (self.in_turns[str(m["id"])][0], int(m["to"])) for m in msg["members"]
                   if str(m["id"]) in self.in_turns}
        used, errors = group_turn(members, self.stacks, float(msg.get("budget_s", 0.1)), self.cut.asked)
        was_cut = self.cut.asked()
        self.cut.clear()
        parts: dict[str, Any] = {}
        for key in members:
            if key in errors:
                exc = errors[key]
                parts[key] = {"ok": False, "user": is_user_error(exc),
                              "error": out_of_memory_message() if out_of_memory(exc) else describe(exc)}
            else:
                parts[key] = {"ok": True, **self._turn_reply(*self.in_turns[key], started, used[key])}
        return {"members": parts, "stacks": self.stacks.sizes, "cut": was_cut,
                "elapsed_s": round(time.perf_counter() - started, 5),
                "used_s": round(sum(used.values()), 5)}

    @staticmethod
    def _turn_reply(turns: TrainerInTurns, record: ForwardingRecord, started: float, used: float) -> dict[str, Any]:
        trainer = turns.trainer
        reply = {"events": record.drain(), "mid": turns.mid, "later": turns.later,
                 "elapsed_s": round(time.perf_counter() - started, 5), "used_s": round(used, 5)}
        if trainer is not None:  # the steps done: a step under way (mid) is not one yet
            reply.update(step=turns.completed, status=trainer.status, wall_s=trainer.wall_s,
                         step_s=round(turns.step_s, 4))
        built = record.config and len(record.layer_names) >= len(record.config.get("models", []))
        if built and not getattr(record, "config_sent", False):
            reply.update(config=record.config, layer_names=record.layer_names)
            record.config_sent = True
        return reply

    @staticmethod
    def _run(trainer: LockstepTrainer, n: int, budget_s: float) -> None:
        """Up to ``n`` steps, stopping once ``budget_s`` is spent (a step, its evaluation included,
        is never cut): the parent's quantum for this trainer."""
        deadline = time.perf_counter() + budget_s
        for _ in range(max(1, n)):
            if trainer.done:
                break
            trainer.train_step()
            if time.perf_counter() >= deadline:
                break

    def _job(self, cmd: str, key: str, msg: dict[str, Any]) -> dict[str, Any]:
        if cmd == "job":
            function, args = job_function(msg["kind"]), msg["args"]
            self.jobs[key] = SlicedThread(lambda report: function(args, report), name=f"job-{msg['kind']}")
            return {}
        job = self.jobs.get(key)
        if job is None:
            return {"done": True} if cmd == "cancel" else {"done": True, "error": f"no job {key!r} in this process"}
        if cmd == "cancel":
            job.cancel()
            self.jobs.pop(key, None)
            return {"done": True}
        started = time.perf_counter()
        partials = job.run_slice(float(msg.get("budget_s", 0.1)))
        reply: dict[str, Any] = {"partials": partials, "done": job.done,
                                 "elapsed_s": round(time.perf_counter() - started, 5)}
        if job.done:
            self.jobs.pop(key, None)
            if job.error is not None:
                reply["error"] = out_of_memory_message() if out_of_memory(job.error) else describe(job.error)
            else:
                reply["result"] = job.result
        return reply


if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny layers are dispatch-bound, and the workers share the cores
    config.load_plugins()  # block variants of one's own (the parent checked they import)
    serve(_Tenants(TurnCut.listening()))
    exit_now()
