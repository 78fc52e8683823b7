"""The Records tab's "Take it out of the app": the run as a notebook (``notebook.zip``), and the
trained nets as PyTorch a student can run (``models.zip``: ``model.py``, the weights, ``data.npz``),
for a live run or a replayed one.

A replayed run hands out the ``models/`` its ``train --save-models`` wrote; a live run's nets live
in a worker process, so a click asks it to save them (``save_models``, the CLI's own call) into a
folder of this server's scratch space, zipped and then removed.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import streamlit as st

from resnet_core.records import RecordError
from resnet_core.records.exported_models import MODELS_DIR, models_zip
from resnet_core.records.notebook import notebook_zip

from dashboard.panels.live import View
from dashboard.runtime import scratch
from dashboard.text import literal

MODELS_HELP = ("models/model.py (plain PyTorch, no import of this app: `model.load(NAME)`), each net's weights "
               "as NAME.safetensors, and data.npz: the points its errors were measured on")


def render(view: View, request: Callable[..., None] | None) -> None:
    st.subheader("Take it out of the app")
    _notebook(view)
    _models(view, request)


def _notebook(view: View) -> None:
    """NAME.ipynb and the run's tables beside it (records/notebook.py), made when clicked."""
    record = view.record
    if record is None or not record.models():
        return
    name = view.source if view.state == "replay" else "residual-lab-run"

    def made(r=record, n=name) -> bytes:
        if r.folder is not None:  # the run's own files, every row
            r.flush()
            return notebook_zip(r.folder, n)
        with tempfile.TemporaryDirectory(dir=scratch.root()) as tmp:  # a run served from the cache: what it holds
            return notebook_zip(r.write(Path(tmp) / n), n)
    st.download_button("notebook.zip", made, file_name=f"{name}-notebook.zip", mime="application/zip",
                       key="dl_notebook", on_click="ignore", icon=":material/download:",
                       help=f"{name}.ipynb and the run's tables beside it: pandas reads them, the app's charts draw "
                            "them, and a second part trains the same settings again through resnet_core")


def _models(view: View, request: Callable[..., None] | None) -> None:
    record = view.record
    saved = None
    if record is not None and record.folder is not None and view.state == "replay":
        try:
            saved = models_zip(record.folder)
        except RecordError as exc:
            st.error(literal(exc))
    if saved is None:
        tag = (view.source, view.step)  # a zip saved at another step (or of another run) is not offered
        if request is not None and st.button("Save the trained nets", key="save_models", icon=":material/save:",
                                             help=f"Saves the nets as they are now: {MODELS_HELP}"):
            with st.spinner("Saving the trained nets…"):
                try:
                    st.session_state["models_zip"] = (tag, _saved_live(request))
                except Exception as exc:  # noqa: BLE001 - the job's message, shown instead of a traceback
                    st.error(f"The nets were not saved: {literal(exc)}")
        kept = st.session_state.get("models_zip")
        saved = kept[1] if kept and kept[0] == tag else None
    if saved is None:
        if request is None and view.state == "replay":
            st.caption("This run folder holds no trained nets: `python -m resnet_core train --save-models` writes them.")
        return
    st.download_button("models.zip", saved, file_name="models.zip", mime="application/zip", key="dl_models",
                       on_click="ignore", icon=":material/download:", help=MODELS_HELP)


def _saved_live(request: Callable[..., None]) -> bytes:
    folder = Path(tempfile.mkdtemp(prefix="models-", dir=scratch.root()))
    try:
        request("save_models", folder=str(folder / MODELS_DIR))
        saved = models_zip(folder)
        if saved is None:
            raise RecordError("no net was trained far enough to save (a diverged net is not saved)")
        return saved
    finally:
        shutil.rmtree(folder, ignore_errors=True)
