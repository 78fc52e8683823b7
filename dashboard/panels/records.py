"""The Records tab: download the current run (tidy CSVs and the settings as JSON) and replay a run
folder that the CLI wrote, in the same panels as a live run. Downloads are the run folder's files
(a live run streams its tables into this server's scratch folder as it trains), not tables built
from the record in memory, which keeps only the history the page draws."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import streamlit as st

from resnet_core.records import RecordError, RunRecord

import dashboard.runtime.replay as replay
from dashboard.panels import exports
from dashboard.panels.live import View
from dashboard.runtime.scratch import run_files_limit_mb
from dashboard.text import code, literal
from dashboard.sidebar.url_state import UrlState

TABLES = (("metrics.csv", RunRecord.metrics_frame, "error and loss per model and evaluation step"),
          ("layers.csv", RunRecord.layers_frame, "gradient norm, response std and ‖F(x)‖/‖x‖ per layer and probe"),
          ("paths.csv", RunRecord.paths_frame, "gradient per path length (the unrolled view)"),
          ("lesion.csv", RunRecord.lesion_frame, "training error with one block removed"),
          ("regions.csv", RunRecord.regions_frame, "each model's latest decision map, one row per grid point (2D data)"),
          ("signal.csv", lambda r: r.table_frame("signal.csv"),
           "the stream's squared mean and variance and the branch's variance per block (signal propagation)"),
          ("jacobian.csv", lambda r: r.table_frame("jacobian.csv"),
           "the singular values of the block stack's Jacobian, largest first"),
          ("lens.csv", lambda r: r.table_frame("lens.csv"), "training error and loss read at every block (the block lens)"))
OPTIONAL_TABLES = {"paths.csv", "lesion.csv", "regions.csv", "signal.csv", "jacobian.csv", "lens.csv"}  # some runs


@st.cache_resource(max_entries=4, show_spinner="Reading the run folder…")
def _load(name: str, root: str, stamp: float) -> RunRecord:
    """One read per folder version, shared by every session (a record is only read after this)."""
    return replay.load(name)


def replay_view() -> View | None:
    """The replayed run, when this session picked one; None for the session's live run."""
    name = st.session_state.get("replay")
    if not name:
        return None
    try:
        path = replay.resolve(name)
        record = _load(name, str(replay.runs_dir()), replay.stamp(path))
    except RecordError as exc:
        st.session_state.pop("replay", None)
        st.error(literal(exc), icon=":material/error:")
        return None
    settings, note = replay.settings_of(record)
    if note:
        st.info(note)
    return View(record, settings, record.latest_step(), "replay", name)


MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024  # what one click may make the server hold


def render(view: View, state: UrlState, request=None) -> None:
    """``request``: the ``Session.request`` while a live run has trained nets (exports.py)."""
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Download this run")
        record = view.record
        if record is None:
            st.caption("Nothing recorded yet: press Train or Step first.")
        for file_name, reader, what in TABLES:
            data, help_text = _download(record, file_name, reader, what)
            st.download_button(
                file_name, data if data is not None else "", file_name=file_name, mime="text/csv",
                key=f"dl_{file_name}", on_click="ignore", disabled=data is None, icon=":material/download:",
                help=help_text)
        settings_json = json.dumps({"settings": view.settings.to_dict(), "preset": state.preset,
                                    "lesson": state.lesson}, indent=2)
        st.download_button("settings.json", settings_json, file_name="settings.json", mime="application/json",
                           key="dl_settings", on_click="ignore", icon=":material/download:",
                           help="every setting of this run; `python -m resnet_core train` takes the same values")
    with right:
        st.subheader("Replay a recorded run")
        root = replay.runs_dir()
        folders = replay.run_folders(root)
        st.caption(f"Run folders written by `python -m resnet_core train --out runs/NAME`, from {code(root, 200)}.")
        if not folders:
            st.info("No run folder found there yet.")
        else:
            picked = st.selectbox("Run folder", folders, key="replay_pick")
            go, back = st.columns(2)
            if go.button("Replay in the panels", key="replay_go", icon=":material/replay:", type="primary"):
                st.session_state["replay"] = picked
                st.rerun()
            if st.session_state.get("replay") and back.button("Back to live training", key="replay_back",
                                                                icon=":material/sensors:"):
                st.session_state.pop("replay", None)
                st.rerun()
    exports.render(view, request)


def _download(record: RunRecord | None, file_name: str, reader, what: str):
    """(the button's data, its help): the run folder's own file where the record has one (a live run
    streams its tables there, a replay was read from there), so a download holds every row the run
    recorded; a record without a folder gives what it holds. None: nothing to download."""
    if record is None:
        return None, what
    folder = record.folder
    if folder is None:
        if file_name in OPTIONAL_TABLES and not len(reader(record)):
            return None, what
        return (lambda r=record, f=reader: f(r).to_csv(index=False)), what
    record.flush()
    path = Path(folder) / file_name
    try:
        info = os.lstat(path)
    except OSError:
        return None, what
    if not stat.S_ISREG(info.st_mode):
        return None, what
    if info.st_size > MAX_DOWNLOAD_BYTES:
        return None, (f"{what}. {info.st_size / 2**20:,.0f} MB: more than the page hands out "
                      f"({MAX_DOWNLOAD_BYTES // 2**20} MB); the command line writes it to a run folder")
    if file_name == "layers.csv" and record.stream_truncated_at is not None:
        what += (f". This live run's file stops at step {record.stream_truncated_at}: a session keeps at most "
                 f"{run_files_limit_mb()} MB of files")

    def read(r: RunRecord = record, p: Path = path) -> bytes:
        r.flush()
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            return f.read(MAX_DOWNLOAD_BYTES + 1)[:MAX_DOWNLOAD_BYTES]
    return read, what
