"""The panels of the main page, each a function of a ``View`` (a session's run at the step its
cursor shows, or a replayed run folder).

Each panel reads the record, calls the pure chart builders and draws them with a caption saying
what to look for and which claim of the papers it tests. ``app.py`` wraps the live ones in
``st.fragment(run_every=...)`` while something trains; a figure is rebuilt only when the record
changed since the last refresh of that panel.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st
from streamlit.errors import StreamlitInvalidLayoutContextError

from resnet_core.data import DATASETS, DataError, load_arrays
from resnet_core.records import RunRecord
from resnet_core.settings import Settings

from dashboard.text import code, literal
import dashboard.charts as charts
import dashboard.charts.layers as charts_layers
import dashboard.charts.regions as charts_regions
from dashboard.charts.alt_text import error_alt, figure_alt
from dashboard.panels.accessible import chart
from dashboard.panels.redraw import CURVES_EVERY_S, HEAVY_EVERY_S, paced
from dashboard.runtime.class_runs import CACHED_NOTICE
from dashboard.panels.shared import refresh_pacer
from dashboard.runtime.session_status import refused
from dashboard.runtime.run_cache import metrics_key

HEATMAP_STEPS = 120


@dataclass(frozen=True)
class View:
    record: RunRecord | None
    settings: Settings
    step: int
    state: str                       # a session state (SessionStatus.state), or "replay"
    source: str = "live"             # "live" or the replayed folder's name
    error: str | None = None
    notice: str | None = None
    pending: bool = False            # a command sent to the session and not yet carried out
    steps_per_s: float | None = None  # this session's training pace, while it trains
    rebuilding: bool = False         # the models are rebuilt (replayed) up to the step shown
    cached: bool = False             # served from a run another session started, or the run cache
    slowed: str | None = None        # why this session's run goes slowly (its steps cost seconds)

    @property
    def models(self) -> list[str]:
        if self.record is not None and self.record.models():
            return self.record.models()
        return list(self.settings.models)

    @property
    def active(self) -> bool:
        """Something will change without the user doing anything: the page keeps refreshing."""
        return self.pending or self.state in ("starting", "training")

    @property
    def first_step_coming(self) -> bool:
        """The models are being built, or built and not yet stepped: the page refreshes quickly
        until the first step shows (a click's answer), then at its usual pace."""
        return self.state == "starting" or (self.state == "training" and self.step == 0)

    @property
    def version(self) -> int:
        return self.record.version if self.record is not None else -1


PRESENTER_FONT = 17  # chart text readable from the back of a classroom


SHARED_ENTRIES = 96  # figures and cards kept for every session of the server
_shared: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
_shared_lock = threading.Lock()


def shared(key: tuple, record: RunRecord | None, build: Callable[[], Any]) -> Any:
    """``build()`` once per key for every session of this server process: a class watching one run
    at one step (the run cache serves them all the same record) draws each figure once, not thirty
    times. ``key`` names the record by identity and version; the entry holds the record, so that its
    identity is not reused while the entry lives."""
    with _shared_lock:
        hit = _shared.get(key)
        if hit is not None:
            _shared.move_to_end(key)
            return hit[1]
    value = build()
    with _shared_lock:
        _shared[key] = (record, value)
        while len(_shared) > SHARED_ENTRIES:
            _shared.popitem(last=False)
    return value


class Drawn(go.Figure):
    """A finished figure that many sessions draw: ``st.plotly_chart`` asks every session's every
    refresh for ``to_dict()`` and then encodes its arrays, which was a quarter of the server's CPU
    with a class watching one run; here both are done once, on the first draw. Not to be changed
    after it is first drawn. Its words (``accessible.chart``'s caption) are worked out once too:
    the error chart's, from the metrics table, were 40 % of the server's CPU under a class."""

    @classmethod
    def of(cls, figure: go.Figure, words: Callable[[], str] | None = None) -> "Drawn":
        """The figure itself, now drawn once (its class changed in place: a copy of a plotly figure
        costs as much as building it); ``words()`` says it in words (default: from its traces)."""
        figure.__class__ = cls
        figure.__dict__["_words"] = words
        return figure

    @property
    def words(self) -> str:
        said = self.__dict__.get("_said")
        if said is None:
            words = self.__dict__.get("_words")
            said = self.__dict__["_said"] = words() if words is not None else figure_alt(self)
        return said

    def to_dict(self) -> dict:
        drawn = self.__dict__.get("_drawn")
        if drawn is None:  # the arrays already in plotly's own encoding: encoding again is a copy
            drawn = self.__dict__["_drawn"] = json.loads(pio.to_json(super().to_dict(), validate=False))
        return drawn


def cached_figure(name: str, view: View, build: Callable[[], Any], version: Any = None,
                  words: Callable[[], str] | None = None) -> Any:
    """The panel's figure for this record version (or the ``version`` of the one table it draws),
    built once per version for all sessions, and said in ``words()`` once (see ``Drawn``)."""
    presenter = bool(st.session_state.get("presenter"))

    def styled():
        figure = build()
        if presenter:
            figure.update_layout(font_size=PRESENTER_FONT)
        return Drawn.of(figure, words)

    key = (id(view.record), view.version) if version is None else version
    return shared(("figure", name, view.source, key, presenter), view.record, styled)


def metrics_figure(name: str, view: View, build: Callable[[Any], Any],
                   words: Callable[[Any], str] | None = None) -> Any:
    """A figure of the metrics table alone (curves, cards), shared by every session that sees the
    same rows of one run, wherever each stands between two evaluations; ``words(metrics)``: it
    in words, if not from its traces."""
    said = None if words is None else (lambda: words(metrics_of(view)))
    return cached_figure(name, view, lambda: build(metrics_of(view)), metrics_version(view), said)


def metrics_version(view: View) -> tuple:
    if view.record is None:
        return (-1,)
    return metrics_key(view.record)


def metrics_of(view: View):
    """The record's metrics table, built once per metrics version for all sessions (a refresh of
    the curves or the cards between two evaluations builds nothing)."""
    return shared(("metrics", metrics_version(view)), view.record, view.record.metrics_frame)


def waiting_for_data(view: View, what: str) -> bool:
    if view.record is None:
        st.info(f"{what} appear here once training starts: press **Train** (or **Step**).", icon=":material/info:")
        return True
    return False


# ------------------------------------------------------------------------------------ header
STATE_BADGES = {
    "idle": ":gray-badge[ready]", "starting": ":blue-badge[building the models]",
    "training": ":green-badge[training]", "paused": ":gray-badge[paused]", "done": ":violet-badge[finished]",
    "error": ":red-badge[stopped by an error]", "replay": ":violet-badge[replay]",
}
REBUILDING_BADGE = ":blue-badge[rebuilding the models up to this step]"


def pace(steps_per_s: float | None) -> str:
    """This session's own training pace, for the header: ' · 42 steps/s'."""
    if steps_per_s is None:
        return ""
    return f" · {steps_per_s:.0f} steps/s" if steps_per_s >= 10 else f" · {steps_per_s:.1f} steps/s"


QUICK_STATE = "_quick_refresh"  # session state: whether the page last ran in full awaiting a first step
PACE_STATE = "_refresh_pace"        # session state: (base s, chosen s, pacer key) of the live refreshes
RETUNE_EVERY_S = 10.0               # a page reconsiders its pace at most this often


def retune_pace() -> bool:
    """Whether this page should rerun in full to take up the pace the class's load now asks for
    (``runtime.refresh``): checked at most every RETUNE_EVERY_S, so a crowd never reruns at once."""
    pace, now = st.session_state.get(PACE_STATE), time.monotonic()
    if pace is None or now - st.session_state.get("_pace_checked", 0.0) < RETUNE_EVERY_S:
        return False
    st.session_state["_pace_checked"] = now
    return refresh_pacer().retune(*pace)


def header(source: Callable[[], View], polling: bool = False) -> None:
    """Step counter, state, one card per model; asks for a full rerun once training stops, so
    the page stops polling and the buttons show the new state, and once the first step is taken,
    so the page goes from its quick first refreshes to its usual pace."""
    view = source()
    started = st.session_state.get(QUICK_STATE, False) and not view.first_step_coming
    if polling and (not view.active or started or retune_pace()):
        st.rerun()
    # Horizontal containers, not st.columns: each column is a block of its own, and every element
    # is a message the browser handles at every refresh (bench/page_cost.py: frames per second).
    with st.container(horizontal=True, vertical_alignment="center", gap="large"):
        st.markdown(f"## Step {view.step}", width="content")
        with st.container():
            total = view.settings.steps
            where = f" · replay of {code(view.source)}" if view.state == "replay" else ""
            badge = REBUILDING_BADGE if view.rebuilding else STATE_BADGES.get(view.state, view.state)
            cached = f" · {CACHED_NOTICE}" if view.cached and view.state != "replay" else ""
            st.markdown(f"{badge} &nbsp; {view.step} of {total} steps{pace(view.steps_per_s)}{where}{cached}")
            st.progress(min(1.0, view.step / max(total, 1)))
    if view.error:
        then = "" if refused(view.error) else " — press **Reset** to start again"  # a limit: Train asks again
        st.error(f"{literal(view.error)}{then}.", icon=":material/error:")
    if view.notice:
        st.toast(view.notice, icon=":material/info:")
    if view.slowed and view.state == "training":
        st.info(literal(view.slowed), icon=":material/hourglass_top:")
    models = view.models
    if view.record is not None:
        cards = shared(("cards", metrics_version(view), tuple(models)), view.record,
                       lambda: charts.model_cards(metrics_of(view), models))
    else:
        cards = [charts.ModelCard(m, None, None, None) for m in models]
    with st.container(horizontal=True):
        for card in cards:
            st.metric(card.model, card.value, card.delta, delta_color="inverse", border=True, width="stretch",
                      help="training error (eval mode) at the latest evaluation; the change is since the one before")


def header_in(slot, source: Callable[[], View], polling: bool = False) -> None:
    """The header drawn into ``slot`` (an ``st.empty`` above the tabs), from inside a tab's fragment:
    one fragment run then refreshes both, where two fragments would cost two runs a second.

    A full run cut short by the next click may not have reached the fragment, and then Streamlit
    has no place reserved in ``slot`` for it (seen under load): skip this refresh, the next full
    run reserves it again."""
    try:
        with slot.container():
            header(source, polling)
    except StreamlitInvalidLayoutContextError:
        return


def header_and_curves(slot, source: Callable[[], View], polling: bool, show: str = "error") -> None:
    header_in(slot, source, polling)
    training_curves(source, show)


# ------------------------------------------------------------------------------- the panels
def training_curves(source: Callable[[], View], show: str = "error") -> None:
    view = source()
    if waiting_for_data(view, "Training curves"):
        return
    models = view.models
    if show == "loss":
        fig = paced("loss", view, lambda: metrics_figure(
            "loss", view, lambda metrics: charts.loss_figure(metrics, models)), CURVES_EVERY_S)
    else:
        fig = paced("error", view, lambda: metrics_figure(
            "error", view, lambda metrics: charts.error_figure(metrics, models),
            lambda metrics: error_alt(metrics, models)), CURVES_EVERY_S)
    chart(fig, key="curves", config={"displaylogo": False})


def gradients(source: Callable[[], View]) -> None:
    view = source()
    if waiting_for_data(view, "Gradient norms"):
        return
    record = view.record

    def heatmaps():
        return charts_layers.gradient_heatmaps(
            {m: record.layer_matrix(m, "grad_norm", max_steps=HEATMAP_STEPS) for m in view.models})

    chart(paced("grad_heat", view, lambda: cached_figure("grad_heat", view, heatmaps), HEAVY_EVERY_S),
          key="grad_heat", config={"displaylogo": False})
    chart(paced("grad_profile", view, lambda: cached_figure("grad_profile", view, lambda: charts_layers.profile_figure(
        latest(record, view.models, "grad_norm"), "‖∂L/∂W‖ (latest probe)")), HEAVY_EVERY_S),
          key="grad_profile", config={"displaylogo": False})


def signals(source: Callable[[], View], sort: bool = False) -> None:
    view = source()
    if waiting_for_data(view, "Layer responses"):
        return
    record = view.record
    chart(paced(f"std{sort}", view, lambda: cached_figure(f"std{sort}", view, lambda: charts_layers.profile_figure(
        latest(record, view.models, "act_std"), "std of the layer's response", sort=sort)), HEAVY_EVERY_S),
          key="std", config={"displaylogo": False})
    residual = [m for m in view.models if m.startswith("resnet")]
    if not residual:
        st.caption("No residual model in this run: ‖F(x)‖/‖x‖ needs a residual block.")
        return

    def ratios():
        latest_r = {m: (s, charts_layers.block_values(v)) for m, (s, v) in latest(record, residual, "branch_ratio").items()}
        first_r = {m: (s, charts_layers.block_values(v)) for m, (s, v) in first(record, residual, "branch_ratio").items()}
        return charts_layers.branch_ratio_figure(latest_r, first_r)

    chart(paced("ratio", view, lambda: cached_figure("ratio", view, ratios), HEAVY_EVERY_S),
          key="ratio", config={"displaylogo": False})


def regions(source: Callable[[], View]) -> None:
    view = source()
    if waiting_for_data(view, "Decision regions"):
        return
    maps = view.record.regions()
    if not maps:
        st.info("Decision maps are drawn during training (every third evaluation), and kept in a run folder's "
                "regions.csv.",
                icon=":material/info:")
        return
    points = training_points(view.settings.dataset, json.dumps(dict(view.settings.dataset_args), sort_keys=True))
    if points is None:
        st.info("Decision regions need 2D data.")
        return
    x, y, n_classes = points
    chart(paced("regions", view, lambda: cached_figure("regions", view, lambda: charts_regions.regions_figure(
        maps, x, y, n_classes, view.models)), HEAVY_EVERY_S), key="regions", config={"displaylogo": False})


# ----------------------------------------------------------------------------------- helpers
def latest(record: RunRecord, models: list[str], field_name: str) -> dict[str, tuple[int, np.ndarray]]:
    out = {}
    for m in models:
        snaps = record.snapshots(m)
        if snaps:
            out[m] = (snaps[-1].step, getattr(snaps[-1], field_name))
    return out


def first(record: RunRecord, models: list[str], field_name: str) -> dict[str, tuple[int, np.ndarray]]:
    out = {}
    for m in models:
        snaps = record.snapshots(m)
        if snaps:
            out[m] = (snaps[0].step, getattr(snaps[0], field_name))
    return out


def is_2d(dataset: str) -> bool:
    return dataset in DATASETS and dataset not in ("digits", "cifar10")


@st.cache_resource(max_entries=8, show_spinner=False)
def training_points(dataset: str, args_json: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The training points of a 2D data set, for the decision maps (cheap: generated, not read)."""
    if not is_2d(dataset):
        return None
    try:
        data = load_arrays(dataset, json.loads(args_json))
    except (DataError, OSError):
        return None
    if data.x_train.ndim != 2 or data.x_train.shape[1] != 2:
        return None
    return data.x_train, data.y_train, int(data.n_classes)
