"""A page's refresh waits while a click is being answered: a student waits for a click, not for a refresh.

Every page's script runs in a thread of the server's one Python process, so all of them share one
core's worth of Python (the GIL), switched between the runnable threads every few milliseconds.
Under a class's load a click's full run of the page (~50-90 ms of CPU) shared the GIL with the live
fragments' refreshes of the other pages, and took twice as long or more (`bench/load_test.py
--classroom`). So a refresh starts only once no click is running, waiting at most ``MAX_WAIT_S``: a
page never stops refreshing however many clicks there are, it refreshes a little later. Only the
start of a refresh waits; one already running goes on (no lock is held while a script runs). A
fragment drawn within a click's own full run is part of that click, and does not wait for it.

Nothing here calls Streamlit.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

MAX_WAIT_S = 1.0  # the longest a refresh waits for the clicks to be answered


class ClicksFirst:
    def __init__(self, max_wait_s: float = MAX_WAIT_S):
        self.max_wait_s = max_wait_s
        self._clicks = 0
        self._idle = threading.Condition()
        self._thread = threading.local()  # .clicking: this thread runs a click

    @contextmanager
    def click(self) -> Iterator[None]:
        """Around a full run of a page: the refreshes starting meanwhile wait for its end."""
        with self._idle:
            self._clicks += 1
        self._thread.clicking = True
        try:
            yield
        finally:
            self._thread.clicking = False
            with self._idle:
                self._clicks -= 1
                if not self._clicks:
                    self._idle.notify_all()

    def wait_for_clicks(self) -> bool:
        """Block (holding no lock, so not the GIL) until no click runs, or ``max_wait_s``; whether
        the clicks were done by then. Within a click (its own fragments drawn in its full run): at once."""
        if getattr(self._thread, "clicking", False):
            return True
        with self._idle:
            return self._idle.wait_for(lambda: not self._clicks, self.max_wait_s)
