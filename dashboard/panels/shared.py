"""What every session of this server process shares: the scheduler of its worker processes, and
the runs by key (one computation per key, the run cache behind it); and what names a session to
them (``page_id``).

One ``Scheduler`` per server (``st.cache_resource``), made on the server's first page view, with
the worker process ``dashboard.prestart`` started as that view began; closed (its processes ended) when Streamlit
releases its resources. The page, the sessions' training and the analysis panels all use this one, so
one budget of processes (env ``RESIDUAL_LAB_PROCESSES``) covers them all.
"""
from __future__ import annotations

import sys
import uuid

import streamlit as st

import dashboard.prestart as prestart
from dashboard.runtime.class_runs import ClassRuns
from dashboard.runtime.refresh import RefreshPacer
from dashboard.runtime.run_cache import RunCache
from resnet_core.scheduling.scheduler import Scheduler


@st.cache_resource(on_release=Scheduler.close, show_spinner=False)
def scheduler() -> Scheduler:
    return Scheduler(spare=prestart.take())


@st.cache_resource(show_spinner=False)
def class_runs() -> ClassRuns:
    """The runs of this server by key, with the run cache folder (env RESIDUAL_LAB_RUN_CACHE)."""
    try:
        cache = RunCache()
    except ValueError as exc:  # a size limit that is not a number: no cache, and the log says why
        print(f"residual-lab: the run cache is off: {exc}", file=sys.stderr)
        cache = None
    return ClassRuns(scheduler(), cache)


@st.cache_resource(show_spinner=False)
def refresh_pacer() -> RefreshPacer:
    """How often the live pages of this server refresh (``dashboard.runtime.refresh``)."""
    return RefreshPacer()


def client_address() -> str | None:
    """The computer this tab is on: its address, or, behind the class's proxy (a connection from
    this machine), the address the proxy names (X-Forwarded-For; scripts/serve-class.sh sets it)."""
    try:
        address = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For", "")
    except (AttributeError, RuntimeError):
        return None
    if forwarded and address in (None, "127.0.0.1", "::1"):
        return forwarded.split(",")[-1].strip() or address
    return address


def page_id() -> str:
    """This browser tab: the refresh pacer's key for its page, and the owner the scheduler charges
    the tab's training and analyses to (one share of the worker processes per tab)."""
    return st.session_state.setdefault("_page_id", uuid.uuid4().hex)
