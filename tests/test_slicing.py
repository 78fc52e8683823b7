"""Time slices inside a worker process (resnet_core.remote.slicing): a long job runs only while it
is given a slice, stops at its next ``report`` once the slice is spent, and can be cancelled there."""
from __future__ import annotations

import time

from resnet_core.remote.slicing import SlicedThread


def counting_job(counter: list[int], until: int | None = None):
    def job(report):
        while until is None or counter[0] < until:
            counter[0] += 1
            report(counter[0] if counter[0] % 1000 == 0 else None)  # a progress report, or only a place to pause
        return "finished"
    return job


def test_a_job_runs_only_during_its_slices():
    counter = [0]
    job = SlicedThread(counting_job(counter))
    time.sleep(0.1)
    assert counter[0] == 0  # not started before its first slice
    partials = job.run_slice(0.05)
    after = counter[0]
    assert after > 0 and partials == [n for n in range(1000, after + 1, 1000)]
    time.sleep(0.1)
    assert counter[0] == after  # paused between slices: the process runs one thing at a time
    job.run_slice(0.05)
    assert counter[0] > after
    job.cancel()
    assert job.done and job.error is None and job.result is None


def test_a_job_that_ends_hands_back_its_result_or_its_error():
    counter = [0]
    job = SlicedThread(counting_job(counter, until=2500))
    while not job.done:
        job.run_slice(1.0)
    assert job.result == "finished" and counter[0] == 2500

    def failing(report):
        raise ValueError("depth 7 is not valid")

    job = SlicedThread(failing)
    job.run_slice(1.0)
    assert job.done and str(job.error) == "depth 7 is not valid"
