"""Faults a classroom server meets (issues 5 and 13): a training process that dies mid-run, one that
stops answering, and a server that restarts. What the user sees, and that nothing else stops."""
from __future__ import annotations

import os
import signal

import psutil
import pytest

import resnet_core.scheduling.host as host_module
from dashboard.runtime.session import Session
from resnet_core.scheduling.scheduler import Scheduler
from test_sessions import TINY, wait_for

from class_serving import server
from load_test import step_of
from streamlit_client import StreamlitClient

LONG = TINY.with_changes(steps=20_000, eval_every=50)


def test_a_training_process_killed_mid_run_is_shown_in_its_session_only(tmp_path):
    pool = Scheduler(size=2)
    a, b = Session(pool, LONG), Session(pool, LONG)
    try:
        a.train()
        b.train()
        wait_for(lambda: a.status().step > 5 and b.status().step > 5)
        assert a.pid != b.pid  # the two runs went to the two processes
        os.kill(a.pid, signal.SIGKILL)  # the OOM killer, or a crash in torch
        status = wait_for(lambda: (s := a.status()).state == "error" and s)
        assert "training process ended unexpectedly" in status.error
        assert status.record is not None and len(status.record.snapshots("plain-4")) > 1  # the charts stay
        before = b.status().step
        wait_for(lambda: b.status().step > before + 20)  # the other session never noticed
        assert b.status().state == "training" and b.status().error is None
        a.reset(TINY)  # Reset recovers: a fresh process replaces the dead one
        a.step()
        wait_for(lambda: a.status().step == 1, timeout=90)
    finally:
        for job in (a, b):
            job.stop(wait=True)
        pool.close()


def test_a_training_process_that_stops_answering_is_replaced_and_the_others_go_on(monkeypatch):
    """A process stopped mid-run (SIGSTOP: as good as a hang) is noticed at its reply's deadline,
    killed and replaced; its sessions are told and can Reset; the other process's sessions move."""
    monkeypatch.setattr(host_module, "REPLY_DEADLINE_S", 3.0)
    pool = Scheduler(size=2)
    stuck, other = Session(pool, LONG), Session(pool, LONG.with_changes(seed=1))
    try:
        stuck.train()
        other.train()
        wait_for(lambda: stuck.status().step > 5 and other.status().step > 5)
        pid = stuck.pid
        assert pid != other.pid
        os.kill(pid, signal.SIGSTOP)
        status = wait_for(lambda: (s := stuck.status()).state == "error" and s, timeout=30)
        assert "stopped answering" in status.error and "replaced" in status.error
        assert status.record is not None  # the charts stay
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
        before = other.status().step
        wait_for(lambda: other.status().step > before + 20)
        assert other.status().error is None
        stuck.reset(TINY)  # Reset recovers, on the fresh process
        stuck.step()
        wait_for(lambda: stuck.status().step == 1, timeout=90)
        assert stuck.pid not in (None, pid)
    finally:
        for job in (stuck, other):
            job.stop(wait=True)
        pool.close()


@pytest.mark.slow
def test_a_server_restart_leaves_no_worker_and_no_stale_session(tmp_path):
    with server(tmp_path / "first.log", {"RESIDUAL_LAB_PROCESSES": "1"}) as (url, proc):
        client = StreamlitClient(url)
        client.run(timeout=120)
        client.click("Train")
        wait_for(lambda: (step_of(client) or 0) > 0, timeout=120)  # training, so its worker exists
        workers = [p.pid for p in proc.children(recursive=True)]
        assert workers
        client.close()
    # the server stopped: its training processes went with it
    wait_for(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                             for pid in workers), timeout=30)
    with server(tmp_path / "second.log") as (url, proc):
        client = StreamlitClient(url)
        client.run(timeout=120)
        texts = [t.strip() for t in client.page.texts]
        assert "## Step 0" in texts, texts  # a new session starts afresh
        client.close()
    for log in ("first.log", "second.log"):
        assert "Traceback" not in (tmp_path / log).read_text()


def test_a_run_bigger_than_its_process_may_hold_fails_that_run_only(monkeypatch):
    """The estimate let it through (budget lifted), the worker's own memory limit did not: one line
    says so, and the same process trains the next run."""
    from resnet_core.remote.worker_process import WorkerError, WorkerProcess
    from resnet_core.settings import Settings

    monkeypatch.setenv("RESIDUAL_LAB_RUN_MEMORY_MB", "100000")
    monkeypatch.setenv("RESIDUAL_LAB_WORKER_MEMORY_MB", "900")
    big = Settings(models=("plain-402",), width=96, batch_size=4096, steps=2, paths_every=0,
                   dataset_args={"n": 8000})  # about 3.4 GB at its peak (bench/bench_memory.py)
    worker = WorkerProcess()
    try:
        with pytest.raises(WorkerError) as caught:
            worker.request(cmd="init", settings=big.to_dict(), only=list(big.models))
            worker.request(cmd="step", n=1)
        message = str(caught.value)
        assert message.startswith("this run needed more memory than one run's process may use (900 MB)")
        assert "\n" not in message
        reply = worker.request(cmd="init", settings=TINY.to_dict(), only=list(TINY.models))
        assert worker.request(cmd="step", n=2)["step"] == 2 and reply["layer_names"]
    finally:
        worker.close()
