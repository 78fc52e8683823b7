"""What one computer may ask of the class's server: at most ``runs_per_client()`` runs training at
once from its tabs (one student opening 40 tabs, each training, slowed a classmate's run from 248
to 10 steps a second). Its tabs are the sessions whose address (``panels.shared.client_address``)
is the same. The proxy of ``scripts/serve-class.sh`` caps the tabs themselves. Nothing here calls
Streamlit.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

RUNS_PER_CLIENT_ENV = "RESIDUAL_LAB_RUNS_PER_CLIENT"
RUNS_PER_CLIENT = 3  # runs one computer's tabs may train at once


def runs_per_client() -> int:
    try:
        return max(1, int(os.environ.get(RUNS_PER_CLIENT_ENV, "")))
    except ValueError:
        return RUNS_PER_CLIENT


def crowded(job: Any, jobs: Iterable[Any]) -> str | None:
    """Why ``job`` (a TrainingJob) may not start training now, or None: its computer's other tabs
    (``jobs`` with its ``client``) already train the most runs one computer may."""
    if job.client is None or job.training():
        return None
    limit = runs_per_client()
    busy = sum(1 for other in jobs if other is not job and other.client == job.client and other.training())
    if busy < limit:
        return None
    return (f"this computer already trains {busy} runs in other tabs, the most one computer may train at once "
            f"on the class's server ({RUNS_PER_CLIENT_ENV}={limit}): pause one of them, then press Train here")
