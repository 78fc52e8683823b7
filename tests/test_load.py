"""Five sessions on one real server, two pressing Train on a budget of one worker process: both
train at once (each page shows its own pace), the budget holds, nothing errs, and the server lets
go of every session's threads once the tabs close (issues 5 and 10; bench/load_test.py runs the
30-session version)."""

import pytest

from load_test import run_load


@pytest.mark.slow
def test_five_sessions_share_one_training_process(tmp_path):
    figures = run_load(sessions=5, training=2, seconds=12, cap=1, log_path=tmp_path / "server.log")
    assert figures["page_errors"] == [] and figures["server_log_tracebacks"] == 0
    assert figures["peak_training_workers"] <= 1
    assert min(figures["steps_reached"]) > 0  # nobody waited in a queue
    assert figures["sessions_shown_a_pace"] == 2
    assert not figures["server_loaded_torch"]  # the training processes import it; the server starts without
    assert figures["threads_back_to_baseline_s"] is not None, figures["threads_after_close"]
