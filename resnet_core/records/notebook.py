"""A run as a Jupyter notebook that carries on where the app stops.

Its first part reads the run folder with pandas and draws the app's own charts (``dashboard.charts``:
the same builders, so the same figures); its second retrains the very same settings through
``resnet_core`` as a library, one line to change and rerun, and says whether the new run is the
recorded one (same settings and seed: the same numbers). Only the text of the cells is made here:
this module imports neither plotly nor torch.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from resnet_core.records.tables import RUN_FILES, RecordError

READ_FILES = ("config.json", "metrics.csv", "layers.csv", "paths.csv", "lesion.csv")  # what the notebook reads


def build(run: str | os.PathLike, folder_in_notebook: str, title: str | None = None) -> nbformat.NotebookNode:
    """The notebook of the run folder ``run``; its cells open it as ``folder_in_notebook`` (a path
    from where the notebook is)."""
    run = Path(run)
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        settings = config["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"{run} is not a run folder: its config.json cannot be read ({exc})") from None
    models = ", ".join(settings.get("models", []))
    cells = [
        new_markdown_cell(
            f"# {title or run.name}: a Residual Lab run\n\n"
            f"{models} trained on *{settings.get('dataset')}* for {settings.get('steps')} steps "
            f"(seed {settings.get('seed')}). Part 1 reads what the run recorded and draws the app's charts; "
            "part 2 trains the same settings again, here, for you to change."),
        new_markdown_cell("## 1. What the run recorded"),
        new_code_cell(
            "import json\nfrom pathlib import Path\n\nimport pandas as pd\n\n"
            f"RUN = Path({folder_in_notebook!r})  # the run folder\n"
            "config = json.loads((RUN / 'config.json').read_text())\n"
            "models = [m['name'] for m in config['models']]\n"
            "metrics = pd.read_csv(RUN / 'metrics.csv')   # step, model, train_loss, train_error, test_error, ...\n"
            "layers = pd.read_csv(RUN / 'layers.csv')     # step, model, layer, name, grad_norm, act_std, branch_ratio\n"
            "metrics.groupby('model').tail(1)  # each model's last evaluation"),
        new_markdown_cell("Training (solid) and test (dashed) error against step: Fig. 1 of He et al. (2015)."),
        new_code_cell("from dashboard.charts import error_figure, loss_figure\n\n"
                      "error_figure(metrics, models).show()\nloss_figure(metrics, models).show()"),
        new_markdown_cell("The gradient norm of every weighted layer at every probed step (log colour)."),
        new_code_cell(
            "from dashboard.charts.layers import gradient_heatmaps\n\n"
            "def by_step_and_layer(model, column='grad_norm'):\n"
            "    table = layers[layers['model'] == model].pivot(index='step', columns='layer', values=column)\n"
            "    return table.index.to_numpy(), table.to_numpy()\n\n"
            "gradient_heatmaps({m: by_step_and_layer(m) for m in models}).show()"),
    ]
    if (run / "lesion.csv").is_file():
        cells += [
            new_markdown_cell("Each block deleted in turn from the trained nets (Veit et al. 2016)."),
            new_code_cell("from dashboard.charts.paths import lesion_figure\n\n"
                          "lesion = pd.read_csv(RUN / 'lesion.csv')\n"
                          "if len(lesion):\n    lesion_figure(lesion).show()")]
    cells += [
        new_markdown_cell(
            "## 2. Train it again\n\n"
            "The same settings, through `resnet_core` as a library. Change a line (`models`, `steps`, `block`, "
            "`shortcut`, `init`, `lr`, ...) and run the cells again."),
        new_code_cell(
            "from resnet_core.settings import Settings\n"
            "from resnet_core.training.lockstep import LockstepTrainer\n\n"
            "settings = Settings.from_dict(config['settings'])\n"
            "settings = settings.with_changes()  # e.g. with_changes(models=('plain-20', 'resnet-20'), steps=200)\n"
            "trainer = LockstepTrainer(settings)\n"
            "again = trainer.run().metrics_frame()\n"
            "error_figure(again, list(settings.models)).show()\n"
            "again.groupby('model').tail(1)"),
        new_code_cell(
            "# Same settings and seed: the same run, number for number (False once you change a line).\n"
            "def errors(table):\n"
            "    columns = ['step', 'model', 'train_error', 'test_error']\n"
            "    return table[columns].sort_values(['step', 'model']).reset_index(drop=True)\n\n"
            "print('the recorded run again:', errors(again).equals(errors(metrics)))"),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def write(run: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The notebook of ``run`` at ``out``, opening the run by its path relative to ``out``."""
    out = Path(out)
    where = os.path.relpath(Path(run).resolve(), out.resolve().parent)
    nbformat.write(build(run, where), str(out))
    return out


def notebook_zip(run: str | os.PathLike, name: str) -> bytes:
    """``NAME.ipynb`` and the run folder ``NAME/`` (its tables and config) in one zip: what the
    Records tab hands out, opened where it is unpacked."""
    run = Path(run)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}.ipynb", nbformat.writes(build(run, name, title=name)))
        for file in RUN_FILES:
            path = run / file
            if file in READ_FILES and path.is_file() and not path.is_symlink():
                z.write(path, f"{name}/{file}")
    return buffer.getvalue()
