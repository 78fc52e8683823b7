"""The Records tab: download the current run (tidy CSVs and the settings as JSON) and replay a run
folder that the CLI wrote, in the same panels as a live run."""
from __future__ import annotations

import json

import streamlit as st

from resnet_core.records import RecordError, RunRecord

import dashboard.runtime.replay as replay
from dashboard.panels.live import View
from dashboard.sidebar.url_state import UrlState

TABLES = (("metrics.csv", "metrics_frame", "error and loss per model and evaluation step"),
          ("layers.csv", "layers_frame", "gradient norm, response std and ‖F(x)‖/‖x‖ per layer and probe"),
          ("paths.csv", "paths_frame", "gradient per path length (the unrolled view)"),
          ("lesion.csv", "lesion_frame", "training error with one block removed"),
          ("regions.csv", "regions_frame", "each model's latest decision map, one row per grid point (2D data)"))
OPTIONAL_TABLES = {"paths.csv", "lesion.csv", "regions.csv"}  # only some runs record them


@st.cache_resource(max_entries=4, show_spinner="Reading the run folder…")
def _load(name: str, root: str, stamp: float) -> RunRecord:
    """One read per folder version, shared by every session (a record is only read after this)."""
    return replay.load(name)


def replay_view() -> View | None:
    """The replayed run, when this session picked one; None for the live job."""
    name = st.session_state.get("replay")
    if not name:
        return None
    try:
        path = replay.resolve(name)
        record = _load(name, str(replay.runs_dir()), replay.stamp(path))
    except RecordError as exc:
        st.session_state.pop("replay", None)
        st.error(str(exc), icon=":material/error:")
        return None
    settings, note = replay.settings_of(record)
    if note:
        st.info(note)
    return View(record, settings, record.latest_step(), "replay", name)


def render(view: View, state: UrlState) -> None:
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Download this run")
        record = view.record
        if record is None:
            st.caption("Nothing recorded yet: press Train or Step first.")
        for file_name, reader, what in TABLES:
            frame_of = getattr(RunRecord, reader)
            empty = record is None or (file_name in OPTIONAL_TABLES and not _has(record, reader))
            st.download_button(
                file_name, (lambda r=record, f=frame_of: f(r).to_csv(index=False)) if record is not None else "",
                file_name=file_name, mime="text/csv", key=f"dl_{file_name}", on_click="ignore",
                disabled=empty, icon=":material/download:", help=what)
        settings_json = json.dumps({"settings": view.settings.to_dict(), "preset": state.preset,
                                    "lesson": state.lesson}, indent=2)
        st.download_button("settings.json", settings_json, file_name="settings.json", mime="application/json",
                           key="dl_settings", on_click="ignore", icon=":material/download:",
                           help="every setting of this run; `python -m resnet_core train` takes the same values")
    with right:
        st.subheader("Replay a recorded run")
        root = replay.runs_dir()
        folders = replay.run_folders(root)
        st.caption(f"Run folders written by `python -m resnet_core train --out runs/NAME`, from `{root}`.")
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


def _has(record: RunRecord, reader: str) -> bool:
    return len(getattr(record, reader)()) > 0
