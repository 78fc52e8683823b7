"""What every session of this server process shares: the scheduler of its worker processes.

One ``Scheduler`` per server (``st.cache_resource``), made on the server's first page view, with
the worker process ``dashboard.prestart`` started as that view began; closed (its processes ended) when Streamlit
releases its resources. The page, the training jobs and the analysis panels all use this one, so
one budget of processes (env ``RESIDUAL_LAB_PROCESSES``) covers them all.
"""
from __future__ import annotations

import streamlit as st

import dashboard.prestart as prestart
from dashboard.runtime.scheduler import Scheduler


@st.cache_resource(on_release=Scheduler.close, show_spinner=False)
def scheduler() -> Scheduler:
    return Scheduler(spare=prestart.take())
