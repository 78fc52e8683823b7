"""Five sessions on one real server, two pressing Train with room for one: the cap holds, the one
waiting sees its place in the queue, nothing errs, and the server lets go of every session's
threads once the tabs close (issue 5; bench/load_test.py runs the 30-session version)."""

import pytest

from load_test import run_load


@pytest.mark.slow
def test_five_sessions_share_one_training_slot(tmp_path):
    figures = run_load(sessions=5, training=2, seconds=12, cap=1, log_path=tmp_path / "server.log")
    assert figures["page_errors"] == [] and figures["server_log_tracebacks"] == 0
    assert figures["peak_training_workers"] <= 1
    assert figures["sessions_shown_a_queue_place"] >= 1
    assert max(figures["steps_reached"]) > 0
    assert not figures["server_loaded_torch"]  # the training processes import it; the server starts without
    assert figures["threads_back_to_baseline_s"] is not None, figures["threads_after_close"]
