"""What the three study panels (depth sweep, loss landscape, shattered gradients) share: each opens
with its caption, keeps one run per browser tab, and shows it while it computes.

A study's state lives as long as its browser tab: a few seconds after the tab closes its run is
cancelled and any worker process it kept (the landscape keeps its trained twins) is closed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st

from dashboard.runtime.background import BackgroundRun
from resnet_core.remote.jobs import JobPool


@dataclass
class Study:
    run: BackgroundRun | None = None
    pool: JobPool | None = None            # a worker kept between runs (the landscape's trained twins)
    request: dict[str, Any] | None = None  # what the latest run was asked
    total: int = 0                         # units of work in it (a sweep's runs)
    label: str = ""                        # a few words on it, for the caption under its results

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.done

    def close(self) -> None:
        if self.run is not None:
            self.run.cancel()
        if self.pool is not None:
            self.pool.close()


@st.cache_resource(scope="session", on_release=Study.close, show_spinner=False)
def _study(name: str) -> Study:
    return Study()


def open_study(name: str, caption: Callable[[], None]) -> Study:
    """The panel's caption, then this tab's study of that name."""
    caption()
    return _study(name)
