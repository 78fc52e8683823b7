"""Where each bad input of the catalogue (``tests/bad_inputs.py``) comes in, and how its message is
read: the command line, an export command, the sidebar, the sweep panel, an uploaded CSV, CIFAR-10's
files, a link, a full server, a fourth tab, a slowed link, the run cache, a replayed folder. Each
returns a function giving the one line the user sees.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from resnet_core.cli import main
from resnet_core.data import DataError, points_csv_arrays
from resnet_core.training.tensors import load_dataset

ROOT = Path(__file__).resolve().parents[1]

# A run folder as a run writes it (the broken ones below take one of its files away or spoil it).
CONFIG = '{"settings": {"models": ["plain-4"]}, "models": [{"name": "plain-4", "depth": 4}]}'
METRICS = "step,model,train_loss,train_error,test_error,wall_s,status\n0,plain-4,1.0,0.5,0.5,0.0,ok\n"
LAYERS = "step,model,layer,name,grad_norm,act_std,branch_ratio\n0,plain-4,0,stem,1.0,1.0,\n"
GOOD = {"metrics.csv": METRICS, "layers.csv": LAYERS}


def cli(*args: str, env: dict[str, str] | None = None, command: tuple[str, ...] = ("train",),
        files: dict[str, str] | None = None) -> Callable[[], str]:
    """A command run with these arguments: exit 2, one line, and nothing written. ``files``: --out
    is a folder already holding them, which must be left exactly as it was."""
    def run() -> str:
        with tempfile.TemporaryDirectory() as tmp, _environment(env or {}):
            out = Path(tmp) / "run"
            if files is not None:
                out.mkdir()
                for name, text in files.items():
                    (out / name).write_text(text)
            err = io.StringIO()
            steps = ["--steps", "5"] if command[0] != "lesson" else []
            with contextlib.redirect_stderr(err):
                code = main([*command, "--out", str(out), *steps, *args])
            assert code == 2, f"exit {code}"
            if files is None:
                assert not out.exists(), "wrote a folder"
            else:
                assert {p.name: p.read_text() for p in out.iterdir()} == files, "changed the folder"
            assert [p.name for p in Path(tmp).iterdir()] == (["run"] if files is not None else []), "wrote beside it"
            cores = f"to {os.cpu_count() or 1}, this machine's cores"  # the table is the same on any machine
            return err.getvalue().strip().replace(tmp, "<tmp>").replace(cores, "to N, this machine's cores")
    return run


def export_command(*args: str, run: dict[str, str] | None = None,
                   env: dict[str, str] | None = None) -> Callable[[], str]:
    """``notebook``, ``clip`` or ``figures`` run in a fresh folder (holding the run folder ``run``
    where given): exit 2, one line, and nothing written."""
    def call() -> str:
        with tempfile.TemporaryDirectory() as tmp, _environment(env or {}), contextlib.chdir(tmp):
            if run is not None:
                Path("run").mkdir()
                for name, text in run.items():
                    Path("run", name).write_text(text)
            before = sorted(str(p) for p in Path(tmp).rglob("*"))
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(list(args))
            assert code == 2, f"exit {code}"
            assert sorted(str(p) for p in Path(tmp).rglob("*")) == before, "wrote something"
            return err.getvalue().strip().replace(tmp, "<tmp>")
    return call


def sidebar(query: str) -> Callable[[], str]:
    """A link whose values are each allowed but whose run is too big: the sidebar's error (the check
    it calls on every change, before any worker is asked)."""
    def run() -> str:
        from urllib.parse import parse_qsl

        import dashboard.sidebar.url_state as url_state
        from resnet_core.lessons import LESSONS
        from resnet_core.settings import SettingsError
        from resnet_core.sizing.budget import check_settings

        state, notes = url_state.decode(dict(parse_qsl(query)), LESSONS)
        assert not notes, notes
        with _environment(BUDGET):
            try:
                check_settings(state.settings)
            except SettingsError as exc:
                return str(exc)
        raise AssertionError("accepted")
    return run


def sweep_panel(depths: tuple[int, ...], **settings) -> Callable[[], str]:
    """The depth-sweep panel's Run: the plan, then the budget of its deepest run."""
    def run() -> str:
        from resnet_core.analysis.sweep import deepest_run, plan_sweep
        from resnet_core.settings import Settings, SettingsError
        from resnet_core.sizing.budget import check_settings

        with _environment(BUDGET):
            try:
                jobs = plan_sweep(Settings(**settings).checked(), depths, (0,), steps=10)
                check_settings(deepest_run(jobs))
            except SettingsError as exc:
                return str(exc)
        raise AssertionError("accepted")
    return run


BUDGET = {"RESIDUAL_LAB_RUN_MEMORY_MB": "6144"}  # the default on the 24 GB, 2-core machine the table was made on
RUN_FILES = {"config.json": '{"settings": {}, "models": []}', "metrics.csv": "step\n", "layers.csv": "step\n"}


def csv_upload(text: str | bytes) -> Callable[[], str]:
    def run() -> str:
        data = text if isinstance(text, bytes) else text.encode()
        try:
            points_csv_arrays(data)  # what the sidebar calls on an upload
        except DataError as exc:
            return str(exc)
        raise AssertionError("accepted")
    return run


def cifar(records: int, extra_bytes: int = 0, label: int = 3) -> Callable[[], str]:
    def run() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            record = bytes([label]) + bytes(3072)
            (Path(tmp) / "data_batch_1.bin").write_bytes(record * records + bytes(extra_bytes))
            (Path(tmp) / "test_batch.bin").write_bytes(bytes([1]) + bytes(3072))
            try:
                load_dataset("cifar10", {"root": tmp, "batches": 1, "train_limit": 10, "test_limit": 1})
            except DataError as exc:
                return str(exc).replace(tmp, "<dir>")
        raise AssertionError("accepted")
    return run


def link(query: str) -> Callable[[], str]:
    """A shared link: the app opens with the values clamped or replaced, and says which."""
    def run() -> str:
        from urllib.parse import parse_qsl

        import dashboard.sidebar.url_state as url_state
        from resnet_core.lessons import LESSONS

        _, notes = url_state.decode(dict(parse_qsl(query)), LESSONS)
        assert notes, "accepted"
        return "; ".join(notes)
    return run


def server_full() -> Callable[[], str]:
    """Train on a server whose worker's memory the class's training runs fill (each run within its
    own budget): refused at once, the server named, not the run."""
    def run() -> str:
        from dashboard.runtime.runs import Run
        from resnet_core.scheduling.scheduler import Scheduler, SchedulerFull, Task
        from resnet_core.settings import Settings
        from resnet_core.sizing.budget import MB

        class Training(Task):  # a classmate's run, its models in the process, training
            resident, holding, memory = True, True, 2800 * MB

            def runnable(self) -> bool:
                return False

            def working(self) -> bool:
                return True

        with _environment({"RESIDUAL_LAB_RUN_MEMORY_MB": "3000", "RESIDUAL_LAB_SERVER_MEMORY_MB": "6144"}):
            pool = Scheduler(size=1, warm=False)
            try:
                pool.add(Training())
                pool.add(Training())
                pool.add(Run(pool, Settings(models=("plain-20",), width=512, batch_size=1024)))
            except SchedulerFull as exc:
                return str(exc)
            finally:
                pool.close()
        raise AssertionError("accepted")
    return run


def fourth_tab() -> Callable[[], str]:
    """A computer whose three other tabs train, pressing Train in a fourth."""
    def run() -> str:
        import dashboard.runtime.clients as clients

        class Tab:
            client = "10.0.0.7"

            def __init__(self, training: bool):
                self.busy = training

            def training(self) -> bool:
                return self.busy

        tabs = [Tab(True), Tab(True), Tab(True), Tab(False)]
        return clients.crowded(tabs[3], tabs) or "accepted"
    return run


def slowed_link() -> Callable[[], str]:
    """The costliest link a class found (its steps took 19.7 s with their analyses): it trains,
    at its share of the server, and its student reads why it goes slowly."""
    def run() -> str:
        from dashboard.runtime.session_status import slowed

        return slowed(19.7) or "not slowed"
    return run


def cache_entry() -> Callable[[], str]:
    """A folder of the class's run cache under the runs folder: every session's runs, never replayed."""
    def run() -> str:
        import dashboard.runtime.replay as replay
        from resnet_core.records import RecordError

        with tempfile.TemporaryDirectory() as tmp:
            entry = Path(tmp) / "runs" / "cache" / ("0" * 64)
            entry.mkdir(parents=True)
            for name, text in {**GOOD, "config.json": CONFIG, "cache.json": "{}"}.items():
                (entry / name).write_text(text)
            try:
                replay.resolve(f"cache/{'0' * 64}", Path(tmp) / "runs")
            except RecordError as exc:
                return re.sub("0{20,}", "<key>", str(exc))
        raise AssertionError("accepted")
    return run


def replay_folder(name: str) -> Callable[[], str]:
    def run() -> str:
        import dashboard.runtime.replay as replay
        from resnet_core.records import RecordError

        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "runs").mkdir()
            try:
                replay.resolve(name, Path(tmp) / "runs")
            except RecordError as exc:
                return str(exc).replace(tmp, "<tmp>")
        raise AssertionError("accepted")
    return run


def broken_run(files: dict[str, str | bytes | Callable[[Path], None]], env: dict[str, str] | None = None,
               link: bool = False) -> Callable[[], str]:
    """A run folder under the runs directory whose files are not what a run writes: each file is its
    text (or bytes), or a function that makes it (a link, a pipe) at the path it is given. ``link``:
    the folder itself is a link to one outside the runs directory."""
    def make(runs: Path) -> str:
        folder = runs.parent / "elsewhere" if link else runs / "demo"
        folder.mkdir(parents=True)
        for name, content in {"config.json": CONFIG, **files}.items():
            if callable(content):
                content(folder / name)
            elif isinstance(content, bytes):
                (folder / name).write_bytes(content)
            else:
                (folder / name).write_text(content)
        if link:
            (runs / "demo").symlink_to(folder)
        return "demo"

    def run() -> str:
        import dashboard.runtime.replay as replay
        from resnet_core.records import RecordError

        with tempfile.TemporaryDirectory() as tmp, _environment(env or {}):
            runs = Path(tmp) / "runs"
            runs.mkdir()
            name = make(runs)
            try:
                replay.load(name, runs)
            except RecordError as exc:
                return str(exc).replace(tmp, "<tmp>")
        raise AssertionError("accepted")
    run.make = make  # tests/test_app.py replays the same folders in the page
    return run


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def symlink(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def fifo(path: Path) -> None:
    os.mkfifo(path)
