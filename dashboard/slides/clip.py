"""A clip of a run for slides: the error curves and the gradient heatmap growing step by step, the
step counter in the frame, 10-20 s, written as GIF or MP4 by imageio (imageio-ffmpeg for MP4).

Each frame is the app's own charts (``error_figure``, ``gradient_heatmaps``) drawn with the run's
rows up to that step, side by side in one figure, and rendered by kaleido (figures.py)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from resnet_core.errors import UserError
from resnet_core.records import RunRecord

from dashboard.charts import error_figure
from dashboard.charts.layers import gradient_heatmaps
from dashboard.slides.figures import FONT, gradient_matrices, renderer

FRAMES = 48          # distinct frames at most (each costs a render, about a quarter of a second)
SECONDS = 12.0       # the clip's length, whatever the run's: 10-20 s
WIDTH, HEIGHT = 1280, 480
FORMATS = (".gif", ".mp4")


def frame_steps(steps: list[int], frames: int = FRAMES) -> list[int]:
    """The evaluated steps the frames show: all of them, or ``frames`` of them evenly spread, the
    last always included."""
    if len(steps) <= frames:
        return list(steps)
    picks = np.unique(np.linspace(0, len(steps) - 1, frames).round().astype(int))
    return [steps[i] for i in picks]


def frame_figure(record: RunRecord, step: int, last: int) -> go.Figure:
    """Errors (left) and gradient norms (right, one heatmap per model) up to ``step``."""
    models = record.models()
    metrics = record.metrics_frame()
    errors = error_figure(metrics[metrics["step"] <= step], models)
    heat = gradient_heatmaps(gradient_matrices(record.layers_frame(), models, upto=step))
    data = [dict(t.to_plotly_json(), xaxis="x", yaxis="y") for t in errors.data]
    layout = dict(width=WIDTH, height=HEIGHT, font=dict(size=FONT), margin=dict(l=60, r=20, t=80, b=50),
                  showlegend=True, legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom", font=dict(size=FONT)),
                  title=dict(text=f"<b>step {step}</b> of {last}", x=0.5, y=0.98, font=dict(size=FONT + 8)),
                  xaxis=dict(domain=[0, 0.42], title=dict(text="step"), range=[0, last]),
                  yaxis=dict(domain=[0, 0.88], title=dict(text="error (%)"), range=[0, 100]),
                  annotations=[], coloraxis=heat.layout.coloraxis.to_plotly_json())
    n = max(len(models), 1)
    left, gap = 0.5, 0.04
    width = (1 - left - gap * (n - 1)) / n
    for i, trace in enumerate(t.to_plotly_json() for t in heat.data):
        axis = str(i + 2)
        data.append(dict(trace, xaxis=f"x{axis}", yaxis=f"y{axis}"))
        lo = left + i * (width + gap)
        layout[f"xaxis{axis}"] = dict(domain=[lo, lo + width], anchor=f"y{axis}", range=[0, last], title=dict(text="step"))
        layout[f"yaxis{axis}"] = dict(domain=[0, 0.88], anchor=f"x{axis}", title=dict(text="layer" if i == 0 else ""))
        layout["annotations"].append(dict(text=trace.get("name", ""), x=lo + width / 2, y=0.9, xref="paper", yref="paper",
                                          showarrow=False, yanchor="bottom", font=dict(size=FONT)))
    return go.Figure({"data": data, "layout": layout})


def write_clip(record: RunRecord, out: str | os.PathLike, seconds: float = SECONDS, frames: int = FRAMES) -> Path:
    """The clip of ``record`` at ``out`` (.gif or .mp4)."""
    import imageio.v3 as iio
    import kaleido

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"--out {out}: a clip is written as {' or '.join(FORMATS)}")
    steps = sorted(set(record.metrics_frame()["step"].astype(int)))
    if len(steps) < 2:
        raise UserError("the run has fewer than two evaluations: nothing to animate")
    shown = frame_steps(steps, frames)
    images = []
    with renderer():
        for step in shown:
            png = kaleido.calc_fig_sync(frame_figure(record, step, steps[-1]),
                                        opts=dict(format="png", width=WIDTH, height=HEIGHT, scale=1))
            images.append(iio.imread(io.BytesIO(png))[..., :3])
    per_frame = seconds / len(images)
    if out.suffix.lower() == ".gif":
        iio.imwrite(out, np.stack(images), extension=".gif", duration=int(per_frame * 1000), loop=0)
    else:
        fps = 4
        repeats = max(1, round(per_frame * fps))
        iio.imwrite(out, np.stack([im for im in images for _ in range(repeats)]), extension=".mp4", fps=fps,
                    codec="libx264", macro_block_size=16)
    return out
