"""Every chart of a run as a slide: PNG at 2x of 960x540 (a 1920x1080 slide) and SVG, with every
text at least ``MIN_FONT_PX`` pixels on that slide."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from resnet_core.errors import UserError
from resnet_core.records import RunRecord

from dashboard.charts import error_figure, loss_figure
from dashboard.charts.layers import gradient_heatmaps
from dashboard.charts.paths import lesion_figure

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT, SCALE = 960, 540, 2  # the figure's own size; the PNG is SCALE times it: 1920x1080
MIN_FONT_PX = 18                    # on the 1920x1080 slide: readable from the back of a classroom
FONT = 12  # layout units: 24 px on the slide; a log axis labels its minor ticks at 3/4 of this: 18 px


_ONE_AT_A_TIME = threading.Lock()  # kaleido's sync server is one per process: the page's sessions take turns


def check_browser() -> None:
    """Kaleido drives the browser at ``BROWSER_PATH`` (read by its browser library, choreographer):
    Debian's Chromium unless the user names another. Checked before anything is written."""
    os.environ.setdefault("BROWSER_PATH", CHROMIUM)
    if not Path(os.environ["BROWSER_PATH"]).exists():
        raise UserError(f"figures and clips are drawn by Chromium, and there is none at {os.environ['BROWSER_PATH']}: "
                        "install it (Debian: apt-get install chromium) or set BROWSER_PATH to a Chrome or Chromium")


@contextlib.contextmanager
def renderer() -> Iterator[None]:
    """Kaleido's browser, started once for many figures (a start costs seconds), Debian's Chromium."""
    import kaleido

    check_browser()
    with _ONE_AT_A_TIME:
        kaleido.start_sync_server(silence_warnings=True)
        try:
            yield
        finally:
            kaleido.stop_sync_server(silence_warnings=True)


def for_slide(fig: go.Figure, title: str | None = None) -> go.Figure:
    """A copy of ``fig`` sized for a slide, every text at least MIN_FONT_PX on it."""
    fig = go.Figure(fig)
    fig.update_layout(width=WIDTH, height=HEIGHT, font=dict(size=FONT), margin=dict(l=70, r=30, t=70, b=60),
                      legend=dict(font=dict(size=FONT)), hoverlabel=dict(font=dict(size=FONT)))
    if title:
        fig.update_layout(title=dict(text=title, font=dict(size=FONT + 4), x=0.01, y=0.98))
    fig.update_xaxes(tickfont=dict(size=FONT), title_font=dict(size=FONT))
    fig.update_yaxes(tickfont=dict(size=FONT), title_font=dict(size=FONT))
    for annotation in fig.layout.annotations or ():
        annotation.font = dict(size=max(FONT, annotation.font.size or 0))
    if fig.layout.coloraxis and fig.layout.coloraxis.colorbar:
        fig.update_layout(coloraxis_colorbar=dict(tickfont=dict(size=FONT), title_font=dict(size=FONT)))
    return fig


def gradient_matrices(layers: pd.DataFrame, models: list[str], upto: int | None = None,
                      column: str = "grad_norm") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each model's (steps, values[step, layer]) from a layers table, up to a step where given."""
    if upto is not None:
        layers = layers[layers["step"] <= upto]
    out = {}
    for model in models:
        table = layers[layers["model"] == model].pivot(index="step", columns="layer", values=column)
        out[model] = (table.index.to_numpy(), table.to_numpy(dtype=float))
    return out


def run_charts(record: RunRecord) -> dict[str, go.Figure]:
    """Every chart of the run a slide can hold, by file stem."""
    models = record.models()
    metrics = record.metrics_frame()
    charts = {"training-error": error_figure(metrics, models), "training-loss": loss_figure(metrics, models),
              "gradients": gradient_heatmaps(gradient_matrices(record.layers_frame(), models))}
    lesion = record.lesion_frame()
    if len(lesion):
        charts["lesion"] = lesion_figure(lesion)
    return charts


def save_all(record: RunRecord, out: str | os.PathLike) -> list[Path]:
    """``out/STEM.png`` and ``out/STEM.svg`` for every chart of the run."""
    import kaleido

    check_browser()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with renderer():
        for stem, fig in run_charts(record).items():
            slide = for_slide(fig)
            for fmt, scale in (("png", SCALE), ("svg", 1)):
                path = out / f"{stem}.{fmt}"
                path.write_bytes(kaleido.calc_fig_sync(slide, opts=dict(format=fmt, width=WIDTH, height=HEIGHT,
                                                                         scale=scale)))
                written.append(path)
    return written
