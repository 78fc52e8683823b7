"""The catalogue of bad inputs: every one a user can give, where it comes in, and the message it gets.

`docs/bad-inputs.md` is generated from it (``.venv/bin/python tests/bad_inputs.py``) and
`tests/test_bad_inputs.py` asserts that every row of that table is what the code says today.
Each case is a function returning the one-line message the user sees.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Callable

from resnet_core.cli import main
from resnet_core.data import DataError, points_csv_arrays
from resnet_core.training.tensors import load_dataset

ROOT = Path(__file__).resolve().parents[1]

Case = tuple[str, str, Callable[[], str]]  # (where, what the user gave, how to get the message)


def cli(*args: str) -> Callable[[], str]:
    def run() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(["train", "--out", f"{tmp}/run", "--steps", "5", *args])
            assert code == 2, f"exit {code}"
            assert not Path(f"{tmp}/run").exists(), "wrote a folder"
            return err.getvalue().strip().replace(tmp, "<tmp>")
    return run


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


def broken_run(files: dict[str, str]) -> Callable[[], str]:
    """A run folder under the runs directory whose files are not what a run writes."""
    def run() -> str:
        import dashboard.runtime.replay as replay
        from resnet_core.records import RecordError

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "runs" / "demo"
            folder.mkdir(parents=True)
            for name, text in {"config.json": "{}", **files}.items():
                (folder / name).write_text(text)
            try:
                replay.load("demo", Path(tmp) / "runs")
            except RecordError as exc:
                return str(exc).replace(tmp, "<tmp>")
        raise AssertionError("accepted")
    return run


METRICS = "step,model,train_loss,train_error,test_error,wall_s,status\n0,plain-4,1.0,0.5,0.5,0.0,ok\n"
LAYERS = "step,model,layer,name,grad_norm,act_std,branch_ratio\n0,plain-4,0,stem,1.0,1.0,\n"
# Two models' maps: plain-4's lacks one of its 2 x 2 grid points.
REGIONS = ("step,model,x,y,predicted,confidence\n"
           + "".join(f"0,{m},{x},{y},0,0.9\n" for m in ("plain-4", "resnet-6") for x in (0, 1) for y in (0, 1)
                     if (m, x, y) != ("plain-4", 1, 1)))

GOOD_ROWS = "".join(f"{i % 7 / 7},{i % 5 / 5},{i % 2}\n" for i in range(20))

CASES: list[Case] = [
    ("CLI", "`--models plain-7` (odd depth)", cli("--models", "plain-7")),
    ("CLI", "`--models plain-0` (zero depth)", cli("--models", "plain-0")),
    ("CLI", "`--models plain--8` (negative depth)", cli("--models", "plain--8")),
    ("CLI", "`--models resnet-100000` (huge depth)", cli("--models", "resnet-100000")),
    ("CLI", "`--width 0`", cli("--width", "0")),
    ("CLI", "`--width 100000`", cli("--width", "100000")),
    ("CLI", "`--width 512 --models resnet-1002` (too big to hold)", cli("--width", "512", "--models", "resnet-1002")),
    ("CLI", "`--lr 0`", cli("--lr", "0")),
    ("CLI", "`--lr -0.1`", cli("--lr", "-0.1")),
    ("CLI", "`--lr nan`", cli("--lr", "nan")),
    ("CLI", "`--lr 1e9`", cli("--lr", "1e9")),
    ("CLI", "`--batch-size 0`", cli("--batch-size", "0")),
    ("CLI", "`--batch-size 4000` (more than the data)", cli("--batch-size", "4000")),
    ("CLI", "`--preset nope`", cli("--preset", "nope")),
    ("CLI", "`--dataset mnist`", cli("--dataset", "mnist")),
    ("CLI", "`--block banana`", cli("--block", "banana")),
    ("CLI", "`--dataset-arg arms=lots`", cli("--dataset-arg", "arms=lots")),
    ("CLI", "`--dataset-arg colour=red`", cli("--dataset-arg", "colour=red")),
    ("CLI", "`--bogus` (unknown flag)", cli("--bogus")),
    ("CLI", "`--dataset csv` without a file", cli("--dataset", "csv")),
    ("CSV", "no `label` column", csv_upload("x1,x2\n" + "1,2\n" * 20)),
    ("CSV", "text in a numeric column", csv_upload("x1,x2,label\n" + GOOD_ROWS + "abc,1,0\n")),
    ("CSV", "NaN in a numeric column", csv_upload("x1,x2,label\n" + GOOD_ROWS + "nan,1,0\n")),
    ("CSV", "an empty cell", csv_upload("x1,x2,label\n" + GOOD_ROWS + ",1,0\n")),
    ("CSV", "one class only", csv_upload("x1,x2,label\n" + "".join(f"{i},{i},0\n" for i in range(20)))),
    ("CSV", "an empty file", csv_upload("")),
    ("CSV", "a binary file", csv_upload(bytes(range(256)) * 4)),
    ("CSV", "over 10 MB", csv_upload(b"x1,x2,label\n" + b"0.123456789,0.123456789,1\n" * 420_000)),
    ("CSV", "a million rows (under 10 MB)", csv_upload(b"x1,x2,label\n" + b"1,2,0\n" * 1_000_000)),
    ("CSV", "three rows", csv_upload("x1,x2,label\n1,2,0\n2,3,1\n3,4,0\n")),
    ("link", "`?models=plain-7`", link("models=plain-7")),
    ("link", "`?lr=-1`", link("lr=-1")),
    ("link", "`?lr=nan`", link("lr=nan")),
    ("link", "`?width=100000`", link("width=100000")),
    ("link", "`?batch_size=0`", link("batch_size=0")),
    ("link", "`?steps=1e12`", link("steps=1e12")),
    ("link", "`?block=banana`", link("block=banana")),
    ("link", "`?preset=nope`", link("preset=nope")),
    ("link", "`?dataset=mnist`", link("dataset=mnist")),
    ("link", "`?dataset=csv&data.path=/etc/passwd` (a file path in a link)", link("dataset=csv&data.path=/etc/passwd")),
    ("replay", "a folder outside the runs directory (`../elsewhere`)", replay_folder("../elsewhere")),
    ("replay", "an absolute path (`/etc`)", replay_folder("/etc")),
    ("replay", "a run folder without `metrics.csv`", broken_run({"layers.csv": LAYERS})),
    ("replay", "a `metrics.csv` without its `test_error` column",
     broken_run({"metrics.csv": METRICS.replace(",test_error", ""), "layers.csv": LAYERS})),
    ("replay", "a `paths.csv` whose rows do not match its header",
     broken_run({"metrics.csv": METRICS, "layers.csv": LAYERS, "paths.csv": "step,model\n0,plain-4\n1,plain-4,2,3\n"})),
    ("replay", "a `regions.csv` whose map misses a grid point",
     broken_run({"metrics.csv": METRICS, "layers.csv": LAYERS, "regions.csv": REGIONS})),
    ("CIFAR-10", "a truncated `data_batch_1.bin`", cifar(3, extra_bytes=100)),
    ("CIFAR-10", "a label byte above 9", cifar(3, label=12)),
]


def table() -> str:
    lines = ["| where | the user gives | the message |", "| --- | --- | --- |"]
    for where, what, get in CASES:
        lines.append(f"| {where} | {what} | {get().replace('|', '¦')} |")
    return "\n".join(lines)


HEADER = """# Bad input, and what Residual Lab answers

Every input below was tried; each message is what the user sees, one line, no traceback, and
nothing is lost (the CLI writes nothing; the app keeps its settings and its run; a link's bad
values are clamped or replaced and listed in a warning at the top of the page; the sidebar's own
widgets only offer valid values, and what they cannot rule out is refused by the same settings
checks as the CLI's, shown with `st.error`). The table is
generated by `tests/bad_inputs.py` and `tests/test_bad_inputs.py` asserts every row.

"""

if __name__ == "__main__":
    out = ROOT / "docs" / "bad-inputs.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(HEADER + table() + "\n")
    print(f"wrote {out}")
