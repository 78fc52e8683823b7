"""``clip`` and ``figures``: a run's charts for slides. They are drawn by the dashboard's chart
builders and plotly's export (``dashboard/slides``), imported here only when the command runs: the
one place the command line reaches into the app's package, so a clip shows the very charts the
page shows."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from resnet_core.records import RecordError, RunRecord


CLIP_FORMATS = (".gif", ".mp4")


def run(args: argparse.Namespace) -> int:
    if args.command == "clip" and Path(args.out).suffix.lower() not in CLIP_FORMATS:
        raise RecordError(f"--out {args.out}: a clip is written as {' or '.join(CLIP_FORMATS)}")
    record = RunRecord.read(args.run)
    if args.command == "figures":
        figures = importlib.import_module("dashboard.slides.figures")
        written = figures.save_all(record, args.out)
        print(f"wrote {len(written)} files in {args.out}/")
        return 0
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise RecordError(f"{out} already exists; choose another --out or pass --overwrite")
    clip = importlib.import_module("dashboard.slides.clip")
    path = clip.write_clip(record, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
