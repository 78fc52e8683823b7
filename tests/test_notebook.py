"""``python -m resnet_core notebook runs/x``: the notebook is executed with nbclient on a real
IPython kernel. No cell fails, the tables it reads are the run's, its charts are the app's, and
its second part retrains the very same run through the library."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
import io

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from resnet_core.records import RunRecord
from resnet_core.records.notebook import notebook_zip

pytestmark = pytest.mark.timeout(300)


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "resnet_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def execute(path, cwd) -> nbformat.NotebookNode:
    notebook = nbformat.read(str(path), as_version=4)
    # what the notebook holds once it has run, for the test to compare
    notebook.cells.append(nbformat.v4.new_code_cell(
        "print(json.dumps({'metrics': metrics.to_dict('list'), 'layers': len(layers), 'models': models}))"))
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def printed(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def test_the_notebook_of_a_run_runs_and_retrains_it(tmp_path):
    run = tmp_path / "runs" / "demo"
    done = cli("train", "--dataset", "spirals", "--dataset-arg", "n=300", "--models", "plain-8,resnet-8",
               "--steps", "12", "--eval-every", "6", "--paths-every", "0", "--out", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    made = cli("notebook", "runs/demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    path = tmp_path / "runs" / "demo.ipynb"
    assert made.stdout.strip() == f"wrote {path}"

    notebook = execute(path, path.parent)  # nbclient raises CellExecutionError on any failing cell
    seen = json.loads(printed(notebook.cells[-1]))
    recorded = RunRecord.read(run)
    assert pd.DataFrame(seen["metrics"]).equals(recorded.metrics_frame().reset_index(drop=True))
    assert seen["layers"] == len(recorded.layers_frame()) and seen["models"] == ["plain-8", "resnet-8"]
    plots = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
             if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) >= 5  # error, loss, heatmaps, lesion, and the retrained run's errors
    assert "the recorded run again: True" in "".join(printed(c) for c in notebook.cells)


def test_the_records_download_opens_where_it_is_unpacked(tmp_path):
    """The zip holds the notebook and the run's tables beside it, and the notebook opens them by the
    folder's name (the executed notebook above reads a folder the same way)."""
    from resnet_core.training.lockstep import LockstepTrainer
    from resnet_core.settings import Settings

    settings = Settings(models=("plain-4", "resnet-4"), width=8, steps=6, eval_every=3, paths_every=0,
                        dataset_args={"n": 200})
    LockstepTrainer(settings).run().write(tmp_path / "live")
    with zipfile.ZipFile(io.BytesIO(notebook_zip(tmp_path / "live", "lesson"))) as z:
        assert sorted(z.namelist()) == ["lesson.ipynb", "lesson/config.json", "lesson/layers.csv", "lesson/metrics.csv"]
        notebook = nbformat.reads(z.read("lesson.ipynb").decode(), as_version=4)
        for name in ("metrics.csv", "layers.csv"):
            assert z.read(f"lesson/{name}") == (tmp_path / "live" / name).read_bytes()
    nbformat.validate(notebook)
    assert "RUN = Path('lesson')" in notebook.cells[2].source


@pytest.mark.parametrize("args,message", [
    (["notebook", "nowhere"], "nowhere is not a run folder (no config.json)"),
])
def test_a_bad_notebook_command_is_one_line(tmp_path, args, message):
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {message}: give a folder that `python -m resnet_core train --out` wrote"
