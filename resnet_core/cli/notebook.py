"""``notebook``: a run folder as a Jupyter notebook (records/notebook.py) that reads it with pandas,
draws the app's charts and trains the same settings again."""
from __future__ import annotations

import argparse
from pathlib import Path

from resnet_core.records import RecordError
from resnet_core.records.notebook import write


def run(args: argparse.Namespace) -> int:
    folder = Path(args.run)
    if args.out and Path(args.out).suffix != ".ipynb":
        raise RecordError(f"--out {args.out}: a notebook's name ends in .ipynb")
    if not (folder / "config.json").is_file():
        raise RecordError(f"{args.run} is not a run folder (no config.json): give a folder that "
                          "`python -m resnet_core train --out` wrote")
    out = Path(args.out) if args.out else folder.resolve().parent / f"{folder.resolve().name}.ipynb"
    if out.exists() and not args.overwrite:
        raise RecordError(f"{out} already exists; choose another --out or pass --overwrite")
    print(f"wrote {write(folder, out)}")
    return 0
