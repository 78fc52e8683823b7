"""What a ``Session`` tells its page (``SessionStatus``), the one error it raises, and which changes
of the settings a run takes without a reset. Nothing here calls Streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from resnet_core.records import RunRecord
from resnet_core.settings import Settings

# Settings whose change leaves the models as they are: everything else asks for a reset.
LIVE_FIELDS = ("lr", "steps")


def needs_reset(old: Settings, new: Settings) -> bool:
    """True when ``new`` changes a model, the data or the training recipe, not just lr or steps."""
    a, b = old.to_dict(), new.to_dict()
    return any(a[k] != b[k] for k in a if k not in LIVE_FIELDS)


class SessionError(RuntimeError):
    """A request the session cannot serve (no trained model, an unknown method, a failure in the worker)."""


@dataclass(frozen=True)
class SessionStatus:
    """What the page shows; a copy, so it can be read without any lock."""

    state: str                    # idle | starting | training | paused | done | error
    step: int
    steps: int
    record: RunRecord | None
    settings: Settings
    error: str | None = None
    notice: str | None = None     # one-off information
    model_status: dict[str, str] = field(default_factory=dict)
    diverged_at: dict[str, int] = field(default_factory=dict)
    pending: bool = False         # a command not yet carried out: the page keeps polling
    steps_per_s: float | None = None
    rebuilding: bool = False      # the models are being rebuilt up to the step shown
    cached: bool = False          # a run another session started, or a finished one from the run cache
    slowed: str | None = None     # why this run goes slowly: its steps cost more than a class can share


SHARED_STEP_S = 1.0  # a step (with its analyses) longer than this is more than a class can share at once


def slowed(step_s: float) -> str | None:
    """The one line a session whose steps cost more than a class can share is shown."""
    if step_s <= SHARED_STEP_S:
        return None
    return (f"each step of this run takes about {step_s:.0f} s of the server with its analyses, more than a "
            "class can share at once: it trains at its share of the server, with the class's turns between "
            "its steps; raise eval_every, probe_every or paths_every, or lower the depth, for more steps per second")


REFUSALS = ("the server is full", "this computer already trains")  # the server's limits: Train asks again


def refused(error: str | None) -> bool:
    """Whether an error is a limit of the class's server (pressing Train again asks again), not a
    fault of the run (which Reset clears)."""
    return error is not None and error.startswith(REFUSALS)

