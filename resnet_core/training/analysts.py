"""Who runs the analyses of the nets as a ``LockstepTrainer`` trains them: the evaluations,
decision maps and path analyses due at a step (``LockstepTrainer.analyses_due``), and the lesion
study after training.

``Inline``, the default, runs them in the trainer's own process, between its steps: a dashboard
worker shares its core with other sessions' work, and the trainer's record is complete after every
step. ``SecondCore`` (``second_core.py``) runs them in a second process on the machine's other core
while the steps go on, for a one-model run that would otherwise leave that core idle. ``Mirror`` is
that process's side: its trainer analyses only what it is asked to.
"""
from __future__ import annotations

from typing import Protocol


class Trainer(Protocol):
    """What an analyst asks of the trainer it serves (a ``LockstepTrainer``)."""

    def analyse(self, due: tuple[str, ...]) -> None: ...

    def lesion_here(self) -> None: ...


class Analyst(Protocol):
    def attach(self, trainer: Trainer) -> None:
        """The trainer is built (weights initialised, BN calibrated), before any analysis."""

    def analyse(self, trainer: Trainer, due: tuple[str, ...]) -> None:
        """The analyses ``due`` of the nets as they are now."""

    def lesion_study(self, trainer: Trainer) -> None: ...

    def settle(self) -> None:
        """Return once every analysis asked for is in the trainer's record."""

    def close(self, wait_s: float) -> None:
        """Release what the analyst holds (a process: within ``wait_s``, or at once)."""


class Inline:
    """Each analysis at once, in this process: the record is complete when a step returns."""

    def attach(self, trainer: Trainer) -> None:
        pass

    def analyse(self, trainer: Trainer, due: tuple[str, ...]) -> None:
        trainer.analyse(due)

    def lesion_study(self, trainer: Trainer) -> None:
        trainer.lesion_here()

    def settle(self) -> None:
        pass

    def close(self, wait_s: float = 0.0) -> None:
        pass


class Mirror(Inline):
    """The trainer of a ``SecondCore``'s process: it never steps, and it analyses the states it is
    sent only when asked, so nothing is due by itself (not even at step 0)."""

    def analyse(self, trainer: Trainer, due: tuple[str, ...]) -> None:
        pass
