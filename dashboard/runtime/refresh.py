"""How often the live pages refresh, so that a whole class's refreshes leave the server room to answer.

Every live page re-runs its fragments on timers (``st.fragment(run_every=...)``), and all of them run
in the server's one Python process. A page's refresh costs about 10 ms of that process's CPU
(``bench/server_cost.py``); forty pages refreshing once a second would keep it busy most of the time,
and a student's click would wait behind the others' refreshes. So the pages refresh at their base
pace while the refreshes of all of them, at that pace, would take less than their share of the
server's time; beyond it every page's intervals are stretched by the same factor, just enough
(never past ``SLOWEST_S``). Their share is ``REFRESH_SHARE``, less whatever the clicks (full
runs of the page: ~50 ms each, a class of forty clicking every few seconds takes ~0.4 of a core)
take beyond ``SERVER_SHARE - REFRESH_SHARE``: the clicks are what a student waits for, the
refreshes give way. The costs are what the runs measure as they run (the CPU time of their own
thread over the last ``WINDOW_S``), not an assumption. And a refresh starts only once the clicks
being answered are (``clicks_first``): the pace sets how much the refreshes take, that, when.

Nothing here calls Streamlit.
"""
from __future__ import annotations

import functools
import threading
import time
from collections import deque
from typing import Callable, TypeVar

from dashboard.runtime.clicks_first import ClicksFirst

REFRESH_SHARE = 0.3    # of one core: what the class's refreshes may take of the server's time
SERVER_SHARE = 0.6     # ... and clicks and refreshes together, once the clicks take more than the rest
MIN_REFRESH_SHARE = 0.1  # however busy the clicks are, the refreshes keep this much
SLOWEST_S = 5.0        # a page that trains never refreshes less often than this
WINDOW_S = 6.0         # the refreshes the load is judged on
RETUNE_RATIO = 1.5     # a page takes up a new pace (one full rerun) when it is off by this factor

T = TypeVar("T")


class RefreshPacer:
    def __init__(self, share: float = REFRESH_SHARE, clock: Callable[[], float] = time.monotonic):
        self.share, self.clock = share, clock
        self.clicks_first = ClicksFirst()
        self._lock = threading.Lock()
        self._events: deque[tuple[float, float]] = deque()  # (when, CPU s scaled back to the base pace)
        self._stretch: dict[str, float] = {}               # each page's factor, as last chosen
        self._clicks: deque[tuple[float, float]] = deque()  # (when, CPU s) of each full run of a page

    def note(self, page: str, cpu_s: float) -> None:
        """One refresh of ``page`` took ``cpu_s`` of the server's CPU."""
        now = self.clock()
        with self._lock:
            # At its base pace the page would have refreshed `stretch` times as often.
            self._events.append((now, max(cpu_s, 0.0) * self._stretch.get(page, 1.0)))
            self._trim(now)

    def note_click(self, cpu_s: float) -> None:
        """A full run of a page (a click, a page opened) took ``cpu_s`` of the server's CPU."""
        now = self.clock()
        with self._lock:
            self._clicks.append((now, max(cpu_s, 0.0)))
            self._trim(now)

    def _trim(self, now: float) -> None:
        for events in (self._events, self._clicks):
            while events and now - events[0][0] > WINDOW_S:
                events.popleft()

    def clicks(self) -> float:
        """The share of one core the pages' full runs took."""
        with self._lock:
            self._trim(self.clock())
            return sum(cpu for _, cpu in self._clicks) / WINDOW_S

    def refresh_share(self) -> float:
        """What the refreshes may take now: their share, less what the clicks take beyond theirs."""
        return min(self.share, max(MIN_REFRESH_SHARE, SERVER_SHARE - self.clicks()))

    def load(self) -> float:
        """The share of one core the live pages' refreshes would take, all at their base pace."""
        with self._lock:
            self._trim(self.clock())
            return sum(cpu for _, cpu in self._events) / WINDOW_S

    def stretch(self) -> float:
        """The factor every page's refresh intervals are stretched by now (1: none)."""
        return max(1.0, self.load() / self.refresh_share())

    def _factor(self, base_s: float) -> float:
        """The stretch a fragment of base pace ``base_s`` gets: the class's, up to SLOWEST_S."""
        return min(self.stretch(), SLOWEST_S / base_s) if base_s < SLOWEST_S else 1.0

    def every(self, base_s: float, page: str) -> float:
        """Seconds between ``page``'s refreshes of a fragment whose base pace is ``base_s``."""
        factor = self._factor(base_s)
        with self._lock:
            self._stretch[page] = factor
            if len(self._stretch) > 4096:  # pages gone long ago
                self._stretch.pop(next(iter(self._stretch)))
        return round(base_s * factor, 2)

    def retune(self, base_s: float, current_s: float, page: str) -> bool:
        """Whether a page refreshing every ``current_s`` should take up a new pace: when the one it
        would be given now is ``RETUNE_RATIO`` times longer or shorter."""
        wanted = base_s * self._factor(base_s)
        return wanted > current_s * RETUNE_RATIO or wanted * RETUNE_RATIO < current_s

    def timed_click(self, function: Callable[..., T]) -> Callable[..., T]:
        """``function`` (a page's full run), its CPU time noted as a click; refreshes wait for it."""
        timed = _timed(function, self.note_click)

        @functools.wraps(function)
        def click(*args, **kwargs) -> T:
            with self.clicks_first.click():
                return timed(*args, **kwargs)
        return click

    def timed(self, page: str, function: Callable[..., T]) -> Callable[..., T]:
        """``function`` (a refresh of ``page``), started once no click runs, its CPU time noted."""
        timed = _timed(function, functools.partial(self.note, page))

        @functools.wraps(function)
        def refresh(*args, **kwargs) -> T:
            self.clicks_first.wait_for_clicks()
            return timed(*args, **kwargs)
        return refresh


def _timed(function: Callable[..., T], note: Callable[[float], None]) -> Callable[..., T]:
    """``function``, the CPU time of its own thread in each call handed to ``note``."""
    @functools.wraps(function)
    def timed(*args, **kwargs) -> T:
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            note(time.thread_time() - started)
    return timed
