"""A minimal Streamlit WebSocket client: what a browser tab sends and receives, without the browser.

It speaks Streamlit's own protocol (the protobuf messages shipped in the streamlit package) over
``/_stcore/stream``: it opens a session, runs the script, presses buttons by label, answers the
server's auto-rerun requests for live fragments exactly as the browser does, and times each
interaction (from sending the rerun to the server's ``script_finished``). Thirty of these put the
server under the load of thirty open tabs, while the machine's two cores stay free for the server.

Streamlit (1.67) now and then sends no ``script_finished`` for a full run that a fragment's
auto-rerun follows at once: under a class's load (``load_test.py --classroom``), 0-3 interactions
of some 400 a run saw their run start, then the fragment's run start and finish, and nothing more
(the server idle, no script thread). A run's messages all come before the next run's start, so the client takes that start as
the full run's end, and counts it (``lost_finishes``) rather than waiting a minute for nothing.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import websocket
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

TRAIL = 30  # messages kept of an interaction, from its request on


@dataclass
class Page:
    """What the last full script run showed: buttons by label, metrics, markdown, errors."""
    buttons: dict[str, str] = field(default_factory=dict)   # label -> widget id
    metrics: dict[str, str] = field(default_factory=dict)   # label -> value
    texts: list[str] = field(default_factory=list)          # markdown, captions, alerts
    errors: list[str] = field(default_factory=list)         # st.error / exception bodies


class StreamlitClient:
    def __init__(self, base_url: str, query: str = "", timeout: float = 30.0):
        ws_url = base_url.replace("http", "ws", 1).rstrip("/") + "/_stcore/stream"
        self.ws = websocket.create_connection(ws_url, subprotocols=["streamlit"], timeout=timeout)
        self.query = query
        self.page_hash = ""
        self.page = Page()
        self.bytes_received = 0
        self.auto_reruns: dict[str, float] = {}  # fragment id -> interval s
        self.latencies: list[float] = []
        self.ended: str | None = None  # why this client stopped reading, if it did
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._closed = False
        self.trail: list[str] = []  # what came since the interaction began (its first TRAIL): said by a wait too long
        self.lost_finishes = 0  # full runs whose end was the next run's start (no script_finished came)
        self._waiting = False  # an interaction is waiting for its full run's end
        self._full_run_open = False  # a full run (one that set the page's config) has started and not finished
        self._building = Page()  # owned by the reader thread: what the run in progress has sent
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    # ---- sending ---------------------------------------------------------------------------
    def _send_rerun(self, trigger: str | None = None, fragment: str | None = None) -> None:
        self._note(f"sent {'fragment' if fragment else 'full'} rerun{' (click)' if trigger else ''}")
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_script_hash = self.page_hash
        if trigger:
            w = WidgetState(id=trigger, trigger_value=True)
            state.widget_states.widgets.append(w)
        if fragment:
            state.fragment_id = fragment
            state.is_auto_rerun = True
        with self._lock:
            if not self._closed:
                self.ws.send_binary(msg.SerializeToString())

    def run(self, timeout: float = 60.0) -> float:
        """Run the whole script (what opening the page does); returns seconds to script_finished."""
        return self._interact(None, timeout)

    def click(self, label: str, timeout: float = 60.0) -> float:
        if label not in self.page.buttons:
            raise KeyError(f"no button {label!r}; the page has {sorted(self.page.buttons)}")
        return self._interact(self.page.buttons[label], timeout)

    def _interact(self, trigger: str | None, timeout: float) -> float:
        self._finished.clear()
        self.trail = []
        self._waiting = True
        started = time.perf_counter()
        self._send_rerun(trigger)
        if not self._finished.wait(timeout):
            why = f" (the client stopped reading: {self.ended})" if self.ended else ""
            raise TimeoutError(f"the script did not finish{why}; what came after the request: {'; '.join(self.trail)}")
        elapsed = time.perf_counter() - started
        self.latencies.append(elapsed)
        return elapsed

    def _tick(self) -> None:
        """Re-run live fragments at the interval the server asked for, as the browser does."""
        due: dict[str, float] = {}
        while not self._closed:
            now = time.monotonic()
            for frag, interval in list(self.auto_reruns.items()):
                if now >= due.setdefault(frag, now + interval):
                    due[frag] = now + interval
                    try:
                        self._send_rerun(fragment=frag)
                    except (OSError, websocket.WebSocketException):
                        return
            time.sleep(0.05)

    # ---- receiving -------------------------------------------------------------------------
    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.ws.recv()
            except (OSError, websocket.WebSocketException) as exc:
                self.ended = f"{type(exc).__name__}: {exc}"
                return
            if not isinstance(data, bytes):
                continue
            self.bytes_received += len(data)
            msg = ForwardMsg()
            try:
                msg.ParseFromString(data)
                self._handle(msg)
            except Exception as exc:  # noqa: BLE001  said by the next interaction, not lost in a thread
                self.ended = f"{type(exc).__name__}: {exc}"
                return

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind != "delta":
            self._note(kind if kind != "script_finished" else f"finished {ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)}")
        if kind == "new_session":
            self.page_hash = msg.new_session.page_script_hash
            if self._waiting and self._full_run_open:  # the full run before ended without a word: see the docstring
                self.lost_finishes += 1
                self._full_run_ended()
            self._full_run_open = False
        elif kind == "page_config_changed":
            self._full_run_open = True  # the app's st.set_page_config, first thing in a full run, never in a fragment's
        elif kind == "auto_rerun":
            self.auto_reruns[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
        elif kind == "stop_auto_rerun":
            self.auto_reruns.clear()
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            el = msg.delta.new_element
            which = el.WhichOneof("type")
            page = self._building
            if which == "button":
                page.buttons[el.button.label] = el.button.id
            elif which == "metric":
                page.metrics[el.metric.label] = el.metric.body
            elif which == "markdown":
                page.texts.append(el.markdown.body)
            elif which == "alert":
                page.texts.append(el.alert.body)
                if el.alert.format == 1:  # ERROR
                    page.errors.append(el.alert.body)
            elif which == "exception":
                page.errors.append(f"{el.exception.type}: {el.exception.message}")
        elif kind == "script_finished":
            self._full_run_open = False
            status = msg.script_finished
            if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                self._building = Page()
                return  # cut short by the next request: its run follows and shows the page
            if status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                built, self._building = self._building, Page()
                self.page.metrics.update(built.metrics)  # a live fragment refreshed what it shows
                self.page.texts = built.texts or self.page.texts
                self.page.errors.extend(built.errors)
                return
            self._full_run_ended()

    def _full_run_ended(self) -> None:
        self.page, self._building = self._building, Page()  # a whole run finished: this is the page now
        self._waiting = False
        self._finished.set()

    def _note(self, what: str) -> None:
        if len(self.trail) < TRAIL:
            self.trail.append(f"{time.monotonic() % 1000:.3f} {what}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            try:
                self.ws.close()
            except (OSError, websocket.WebSocketException):
                pass
