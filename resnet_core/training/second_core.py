"""A one-model run's analyses on the machine's second core, while this process trains.

One model trains on one core (tiny layers are dispatch-bound: a second intra-op thread slows the
steps). Its evaluations, decision maps, path analyses and lesion study are compute-bound, and for
a deep net they cost more than the steps: inline, resnet-1002's 30-step run spent 1.6 s training
and about 4 s analysing, with the second core idle. ``SecondCore`` hands them to a worker process
(``python -m resnet_core.training.worker``, started as the run starts so that its interpreter and
torch load alongside this one's) whose trainer mirrors this one: the same settings build the same
nets, and at each step with analyses due this process writes the nets' state to a file and goes on
training while the other analyses it. The lesion study is shared: both processes hold the trained
nets, this one takes the parts of the study from the front and the other from the back until they
meet.

Threads would not do: two Python threads running small kernels fight over the GIL (two threads of
small matrix products took 1.35x as long as the same work one after the other; two processes ran
each at full speed).

Every number is what ``Inline`` gives (the same kernels on the same float32 weights, one thread);
only the moment rows reach the record changes: ``settle`` waits for the last of them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from resnet_core.analysis.paths.lesion import LesionStudy
from resnet_core.remote.trainer import WorkerProcess, replay_events
from resnet_core.settings import Settings

if TYPE_CHECKING:
    from resnet_core.nets.models import Net
    from resnet_core.training.lockstep import LockstepTrainer


# Analyses asked for and not yet answered, at most: where they cost more than the steps between them
# (analyses at every step, say) training waits for the other process rather than running ahead of
# it with a state file for each step behind.
AHEAD = 4


# ---- the nets' state, through a file ------------------------------------------------------------
class States:
    """A trainer's nets' state as one flat float32 file (nothing to unpickle), both ways: what the
    analyses read of each net (parameters, BN's running statistics), in the order ``parameters()``
    and ``buffers()`` give, which is the same for two nets built from the same settings."""

    def __init__(self, trainer: LockstepTrainer):
        self.trainer = trainer
        self.tensors = [t for net in trainer.models.values() for t in state_tensors(net)]
        self.sizes = [t.numel() for t in self.tensors]
        self.flat = torch.empty(sum(self.sizes), dtype=torch.float32)
        self.views = [v.view_as(t) for v, t in zip(self.flat.split(self.sizes), self.tensors)]

    @torch.no_grad()
    def write(self, path: Path) -> dict[str, Any]:
        """The nets' state into ``path``, and the trainer's place in the run (for the message)."""
        torch._foreach_copy_(self.views, self.tensors)
        self.flat.numpy().tofile(path)
        t = self.trainer
        return {"path": str(path), "step": t.step, "wall_s": t.wall_s, "status": dict(t.status)}

    @torch.no_grad()
    def read(self, state: dict[str, Any]) -> None:
        """What ``write`` wrote, into this trainer's nets; the file is removed once read."""
        flat = torch.from_file(state["path"], size=len(self.flat), dtype=torch.float32)
        Path(state["path"]).unlink(missing_ok=True)
        torch._foreach_copy_(self.tensors, [v.view_as(t) for v, t in zip(flat.split(self.sizes), self.tensors)])
        t = self.trainer
        t.step, t.wall_s = int(state["step"]), float(state["wall_s"])
        t.status.update(state["status"])


def state_tensors(net: Net) -> list[torch.Tensor]:
    return [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]


def scratch_folder() -> Path:
    """For the state files: in memory where the system has a tmpfs for it, named after this process.
    Folders of runs whose process is gone (killed before it could remove them) are removed first:
    a tmpfs holds its files in memory until they are."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() else Path(tempfile.gettempdir())
    for old in parent.glob("residual-lab-state-*"):
        pid = old.name.split("-")[3]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"residual-lab-state-{os.getpid()}-", dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive, and not ours to judge
    return True


# ---- this process's side ---------------------------------------------------------------------------
class SecondCore:
    """The ``Analyst`` that sends the analyses to a worker process of its own (see the module)."""

    def __init__(self, settings: Settings, worker: WorkerProcess | None = None) -> None:
        """The other process is asked to build its trainer at once, so that it does while this
        one builds its own (the two are the same: same settings, same seed)."""
        self.settings = settings.checked()
        self.worker = worker or WorkerProcess()
        self.folder = scratch_folder()
        self.trainer: LockstepTrainer | None = None
        self.states: States | None = None
        self.asked: deque[Any] = deque()  # what each reply still to come answers, in order
        self.errors: dict[Any, list[float]] = {}  # lesion parts the other process has done
        self.state_step: int | None = None  # the step of the state the other process holds
        self.parts_there = 0  # lesion parts the other process has done (for tests and benches)
        self._ask("init", cmd="init", settings=self.settings.to_dict(), mirror=True)

    def attach(self, trainer: LockstepTrainer) -> None:
        if trainer.settings != self.settings or list(trainer.models) != list(self.settings.models):
            raise ValueError("a SecondCore mirrors the trainer of the settings it was made for, with all its models")
        self.trainer, self.states = trainer, States(trainer)

    def analyse(self, trainer: LockstepTrainer, due: tuple[str, ...]) -> None:
        while self.asked.count("analyse") >= AHEAD:  # the other process is behind: let it catch up
            self._collect(until=self.asked[0])
        self._ask("analyse", cmd="analyse", due=list(due), **self._state(trainer))
        self._collect()

    def lesion_study(self, trainer: LockstepTrainer) -> None:
        trainer.lesion_here(share=lambda name, study: self._shared(trainer, name, study))

    def settle(self) -> None:
        self._collect(until_empty=True)

    def close(self, wait_s: float = 2.0) -> None:
        """End the other process (at once with ``wait_s=0``: the run stopped) and remove the state
        files; again is harmless (the trainer closes its analyst, and the run its helper)."""
        self.worker.close(wait_s)
        shutil.rmtree(self.folder, ignore_errors=True)

    # ---- inside ------------------------------------------------------------------------------
    def _shared(self, trainer: LockstepTrainer, name: str, study: LesionStudy) -> list[float]:
        """The study's parts: this process from the first, the other from the last, until they
        meet. The first parts cost the most (deleting block i re-runs the n - i blocks after it), so
        the other process is asked for parts from the back until what it has in hand costs at least
        the part this process does next: neither waits on the other."""
        n = len(trainer.models[name].blocks)
        cost = [sum(n - i for i in part) for part in study.parts]
        done: dict[int, list[float]] = {}
        asked: list[int] = []
        front, back = 0, len(study.parts) - 1
        while front <= back or asked:
            while front <= back and sum(cost[i] for i in asked) < cost[front]:
                part = study.parts[back]
                self._ask((name, back), cmd="lesion_part", model=name, points=len(study.y),
                          blocks=[part.start, part.stop], **self._state(trainer))
                asked.append(back)
                back -= 1
            if front <= back:
                done[front] = study.part(front)
                front += 1
            self._collect(until=None if front <= back else (name, asked[0]))
            for i in [i for i in asked if (name, i) in self.errors]:
                done[i] = self.errors.pop((name, i))
                asked.remove(i)
                self.parts_there += 1
        return [e for i in range(len(study.parts)) for e in done[i]]

    def _state(self, trainer: LockstepTrainer) -> dict[str, Any]:
        """The nets' state for the message, unless the other process already holds it."""
        if self.state_step == trainer.step:
            return {}
        self.state_step = trainer.step
        return {"state": self.states.write(self.folder / f"step-{trainer.step}.f32")}

    def _ask(self, what: Any, **msg: Any) -> None:
        self.worker.post(**msg)
        self.asked.append(what)

    def _collect(self, until: Any = None, until_empty: bool = False) -> None:
        """Take in the replies that have come (without waiting), or wait for the one to ``until``,
        or for all of them."""
        while self.asked and (until_empty or until in self.asked or self.worker.ready()):
            reply = self.worker.answer()
            what = self.asked.popleft()
            replay_events(self.trainer.record, reply.get("events", []))
            if "errors" in reply:
                self.errors[what] = reply["errors"]
            if what == until:
                return


# ---- the worker's side -----------------------------------------------------------------------------
class MirrorSide:
    """What a worker keeps for a mirrored trainer: the lesion studies under way on its state."""

    def __init__(self, trainer: LockstepTrainer) -> None:
        self.states = States(trainer)
        self.studies: dict[str, LesionStudy] = {}

    def handle(self, trainer: LockstepTrainer, msg: dict[str, Any]) -> dict[str, Any]:
        if "state" in msg:
            self.close()
            self.states.read(msg["state"])
        if msg["cmd"] == "analyse":
            trainer.analyse(tuple(msg["due"]))
            return {}
        if msg["cmd"] == "lesion_part":
            study = self._study(trainer, msg["model"], int(msg["points"]))
            return {"errors": study.deletions(range(*msg["blocks"]))}
        raise ValueError(f"unknown command {msg['cmd']!r}")

    def _study(self, trainer: LockstepTrainer, name: str, points: int) -> LesionStudy:
        """The study of the state last sent, on the first ``points`` evaluation points, as the
        other process has it: entered (BN frozen, block inputs cached) once for all its parts."""
        if name not in self.studies:
            x, y = trainer.eval_sets["train"]
            self.studies[name] = LesionStudy(trainer.models[name], x[:points], y[:points]).__enter__()
        return self.studies[name]

    def close(self) -> None:
        for study in self.studies.values():
            study.__exit__(None, None, None)
        self.studies.clear()
