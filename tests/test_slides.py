"""Figures and clips for slides, through the command line: every chart of a run as a 1920x1080 PNG
and an SVG whose every text is at least 18 px on that slide, and a GIF and an MP4 of the run
growing step by step (10-20 s, under 10 MB, the step counter in each frame), all drawn by plotly's
export (kaleido driving Debian's Chromium)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from resnet_core.records import RunRecord

REPO = Path(__file__).resolve().parents[1]
README_MEDIA = REPO / "docs" / "exports"  # the README's figure and clip are the ones made here

pytestmark = pytest.mark.timeout(300)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "resnet_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides") / "degradation"
    done = cli("train", "--preset", "degradation", "--models", "plain-8,plain-32,resnet-32", "--steps", "60",
               "--eval-every", "10", "--paths-every", "0", "--dataset-arg", "n=600", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def font_sizes(svg: str) -> list[float]:
    return [float(v) for v in re.findall(r"font-size:\s*([\d.]+)px", svg)]


def test_every_chart_as_png_and_svg_readable_on_a_slide(run, tmp_path):
    done = cli("figures", str(run), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    stems = {"training-error", "training-loss", "gradients", "lesion"}
    assert {p.name for p in tmp_path.iterdir()} == {f"{s}.{ext}" for s in stems for ext in ("png", "svg")}
    for stem in stems:
        png = iio.imread(tmp_path / f"{stem}.png")
        assert png.shape[:2] == (1080, 1920)
        assert len(np.unique(png.reshape(-1, png.shape[-1]), axis=0)) > 20  # drawn, not blank
        svg = (tmp_path / f"{stem}.svg").read_text()
        assert 'width="960"' in svg and 'height="540"' in svg  # shown at 1920x1080: each px counts twice
        sizes = font_sizes(svg)
        assert sizes and 2 * min(sizes) >= 18, (stem, sorted(set(sizes)))
    README_MEDIA.mkdir(parents=True, exist_ok=True)
    (README_MEDIA / "training-error.png").write_bytes((tmp_path / "training-error.png").read_bytes())


@pytest.mark.parametrize("kind", ["gif", "mp4"])
def test_a_clip_of_the_run_growing_step_by_step(run, tmp_path, kind):
    out = tmp_path / f"degradation.{kind}"
    done = cli("clip", str(run), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size < 10e6
    frames = iio.imread(out, index=None)
    steps = sorted(set(RunRecord.read(run).metrics_frame()["step"]))
    if kind == "gif":
        meta = iio.immeta(out, index=None, extension=".gif")
        seconds = len(frames) * meta["duration"] / 1000
        assert len(frames) == len(steps)  # one frame per evaluation (7 here)
    else:
        meta = iio.immeta(out, extension=".mp4")
        seconds = len(frames) / meta["fps"]
    assert 10 <= seconds <= 20
    # the curves grow: later frames hold more ink than the first, and no two neighbours are alike
    ink = [(f.astype(int).sum(-1) < 600).sum() for f in frames]
    assert ink[-1] > ink[0]
    if kind == "gif":
        assert all((a != b).any() for a, b in zip(frames, frames[1:]))
        README_MEDIA.mkdir(parents=True, exist_ok=True)
        (README_MEDIA / "degradation.gif").write_bytes(out.read_bytes())


def test_each_frame_names_its_step():
    """The step counter is the frame's title, drawn from the frame's step."""
    from dashboard.slides.clip import frame_figure, frame_steps
    from resnet_core.settings import Settings
    from resnet_core.training.lockstep import LockstepTrainer

    record = LockstepTrainer(Settings(models=("plain-4", "resnet-4"), width=8, steps=20, eval_every=5, paths_every=0,
                                      dataset_args={"n": 200})).run()
    assert frame_steps([0, 5, 10, 15, 20]) == [0, 5, 10, 15, 20]
    assert frame_steps(list(range(100)), 4) == [0, 33, 66, 99]
    for step in (0, 10, 20):
        fig = frame_figure(record, step, 20)
        assert fig.layout.title.text == f"<b>step {step}</b> of 20"
        assert max(max(t.x) for t in fig.data if t.type == "scatter") == step


@pytest.mark.parametrize("args,message", [
    (["clip", "nowhere", "--out", "x.gif"], "nowhere"),
    (["clip", "docs", "--out", "x.avi"], "a clip is written as .gif or .mp4"),
])
def test_a_bad_clip_command_is_one_line(args, message):
    done = cli(*args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
