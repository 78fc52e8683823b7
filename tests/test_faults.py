"""Faults a classroom server meets (issue 5): a training process that dies mid-run, and a server
that restarts. What the user sees, and that nothing else stops."""
from __future__ import annotations

import os
import signal

import psutil
import pytest

from dashboard.runtime.jobs import TrainingJob
from dashboard.runtime.worker_pool import WorkerPool
from test_jobs import TINY, wait_for

from load_test import server, step_of
from streamlit_client import StreamlitClient

LONG = TINY.with_changes(steps=20_000, eval_every=50)


def test_a_training_process_killed_mid_run_is_shown_in_its_session_only(tmp_path):
    pool = WorkerPool(size=2)
    a, b = TrainingJob(pool, LONG), TrainingJob(pool, LONG)
    try:
        a.train()
        b.train()
        wait_for(lambda: a.status().step > 5 and b.status().step > 5)
        os.kill(a._worker.process.pid, signal.SIGKILL)  # the OOM killer, or a crash in torch
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


@pytest.mark.slow
def test_a_server_restart_leaves_no_worker_and_no_stale_session(tmp_path):
    with server(tmp_path / "first.log", {"RESIDUAL_LAB_MAX_TRAINING": "1"}) as (url, proc):
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
