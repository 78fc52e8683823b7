"""What the AppTest-based tests share: a tiny run's settings and link, and how to read the page's
step counter, wait for the page to reach a state, and find the depth sliders."""
from __future__ import annotations

import re
import time

import dashboard.sidebar.url_state as url_state
from dashboard.sidebar.url_state import UrlState
from resnet_core.settings import Settings

TINY = Settings(models=("plain-4", "resnet-6"), width=8, steps=400, eval_every=5, probe_every=5,
                paths_every=0, dataset_args={"n": 200})
TINY_QUERY = url_state.encode(UrlState(TINY))


def step_of(at) -> int:
    for md in at.markdown:
        match = re.fullmatch(r"## Step (\d+)", md.value.strip())
        if match:
            return int(match.group(1))
    raise AssertionError("no step counter on the page")


def wait_until(at, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        stopped = [e.value for e in at.error if "press **Reset**" in e.value]
        if stopped:
            raise AssertionError(f"the run stopped: {stopped[0]}")
        if time.monotonic() > deadline:
            from dashboard.runtime.session import _OPEN_SESSIONS
            states = [(j.status().state, j.status().error, j.scheduler.stats()) for j in _OPEN_SESSIONS]
            raise AssertionError(f"condition not met; page says step {step_of(at)}; jobs: {states}")
        time.sleep(0.2)
        at.run()


def depth_sliders(at):
    return [s for s in at.select_slider if s.key.endswith(".depth")]
