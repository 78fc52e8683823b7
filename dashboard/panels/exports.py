"""The Records tab's "Take it out of the app": the run as a notebook (``notebook.zip``), and the
trained nets as PyTorch a student can run (``models.zip``: ``model.py``, the weights, ``data.npz``),
for a live run or a replayed one.

A replayed run hands out the ``models/`` its ``train --save-models`` wrote; a live run's nets live
in a worker process, so a click asks it to save them (``save_models``, the CLI's own call) into a
folder of this server's scratch space, zipped and then removed.
"""
from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import streamlit as st

from resnet_core.records import RecordError
from resnet_core.records.exported_models import MODELS_DIR, models_zip
from resnet_core.records.notebook import notebook_zip

from dashboard.slides.clip import write_clip
from dashboard.slides.figures import save_all
from dashboard.panels.live import View
from dashboard.runtime import scratch
from dashboard.text import literal

MODELS_HELP = ("models/model.py (plain PyTorch, no import of this app: `model.load(NAME)`), each net's weights "
               "as NAME.safetensors, and data.npz: the points its errors were measured on")


def render(view: View, request: Callable[..., None] | None) -> None:
    st.subheader("Take it out of the app")
    _notebook(view)
    _models(view, request)
    _slides(view)


def _slides(view: View) -> None:
    """Figures (every chart as PNG and SVG) and a clip, made on a click: a render takes seconds."""
    record = view.record
    if record is None or not record.models():
        return
    tag = (view.source, view.step)
    figures, clip = st.columns(2)
    if figures.button("Make the figures", key="make_figures", icon=":material/image:",
                      help="every chart as PNG (1920x1080) and SVG, text readable on a projector"):
        with st.spinner("Drawing the figures…"):
            st.session_state["figures_zip"] = (tag, _made(lambda folder: save_all(record, folder)))
    kind = clip.selectbox("Clip format", ("gif", "mp4"), key="clip_format", label_visibility="collapsed")
    if clip.button("Make a clip", key="make_clip", icon=":material/movie:",
                   help="the error curves and the gradient heatmap growing step by step, 12 s"):
        with st.spinner("Drawing the clip, frame by frame…"):
            st.session_state["clip"] = (tag, kind, _made(
                lambda folder: [write_clip(record, folder / f"clip.{kind}")]))
    kept = st.session_state.get("figures_zip")
    if kept and kept[0] == tag and kept[1] is not None:
        figures.download_button("figures.zip", kept[1], file_name="figures.zip", mime="application/zip",
                                key="dl_figures", on_click="ignore", icon=":material/download:")
    kept = st.session_state.get("clip")
    if kept and kept[0] == tag and kept[2] is not None:
        clip.download_button(f"clip.{kept[1]}", kept[2], file_name=f"residual-lab.{kept[1]}",
                             mime="image/gif" if kept[1] == "gif" else "video/mp4", key="dl_clip",
                             on_click="ignore", icon=":material/download:")


def _made(make: Callable[[Path], list[Path]]) -> bytes | None:
    """What ``make(folder)`` writes in a scratch folder: the one file's bytes, or several zipped.
    None (and the error shown) where it could not be made."""
    with tempfile.TemporaryDirectory(dir=scratch.root()) as tmp:
        try:
            written = make(Path(tmp))
        except Exception as exc:  # noqa: BLE001 - a missing browser or a record too short: one line
            st.error(f"Not made: {literal(exc)}")
            return None
        if len(written) == 1:
            return written[0].read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for path in written:
                z.write(path, path.name)
        return buffer.getvalue()


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
