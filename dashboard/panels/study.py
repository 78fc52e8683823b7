"""What the three study panels (depth sweep, loss landscape, shattered gradients) share: each opens
with its caption, keeps one run per browser tab, and shows it while it computes.

A study's state lives as long as its browser tab: a few seconds after the tab closes its run is
cancelled. Its jobs run on the server's scheduler, charged to the tab (``shared.page_id``): with
its training they get one share of the worker processes. ``affinity`` keeps a tab's jobs on one
worker process where it can (the landscape's process keeps the twins it trained last).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from resnet_core.scheduling.analysis_run import AnalysisRun

_tabs = itertools.count(1)


@dataclass
class Study:
    run: AnalysisRun | None = None
    affinity: str = field(default_factory=lambda: f"study-{next(_tabs)}")  # this tab's jobs, one process
    request: dict[str, Any] | None = None  # what the latest run was asked
    total: int = 0                         # units of work in it (a sweep's runs)
    label: str = ""                        # a few words on it, for the caption under its results

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.done

    def close(self) -> None:
        if self.run is not None:
            self.run.cancel()


@st.cache_resource(scope="session", on_release=Study.close, show_spinner=False)
def _study(name: str) -> Study:
    return Study()


def open_study(name: str, caption: Callable[[], None]) -> Study:
    """The panel's caption, then this tab's study of that name."""
    caption()
    return _study(name)
