"""What one computer may ask of the class's server: at most ``runs_per_client()`` runs training at
once from its tabs (one student opening 40 tabs, each training, slowed a classmate's run from 248
to 10 steps a second). Its tabs are the sessions whose address (``panels.shared.client_address``)
is the same. The proxy of ``scripts/serve-class.sh`` caps the tabs themselves. Nothing here calls
Streamlit.
"""
from __future__ import annotations

from typing import Any, Iterable

from resnet_core import config


def runs_per_client() -> int:
    """RESIDUAL_LAB_RUNS_PER_CLIENT, 3 by default."""
    return config.get("RUNS_PER_CLIENT")


def crowded(session: Any, sessions: Iterable[Any]) -> str | None:
    """Why ``session`` (a ``session.Session``) may not start training now, or None: its computer's
    other tabs (``sessions`` with its ``client``) already train the most runs one computer may."""
    if session.client is None or session.training():
        return None
    limit = runs_per_client()
    busy = sum(1 for other in sessions if other is not session and other.client == session.client and other.training())
    if busy < limit:
        return None
    return (f"this computer already trains {busy} runs in other tabs, the most one computer may train at once "
            f"on the class's server ({config.env_name('RUNS_PER_CLIENT')}={limit}): pause one of them, then press Train here")
