"""``clip`` and ``figures``: a run's charts for slides. They are drawn by the dashboard's own chart
builders and plotly's export, so a clip shows the very charts the page shows: that program is
``python -m dashboard.slides``, and this command checks its arguments and hands them to it as a
child process. The command line imports nothing of the app (its packages import one way)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from resnet_core.records import RecordError, RunRecord

CLIP_FORMATS = (".gif", ".mp4")


def run(args: argparse.Namespace) -> int:
    if args.command == "clip" and Path(args.out).suffix.lower() not in CLIP_FORMATS:
        raise RecordError(f"--out {args.out}: a clip is written as {' or '.join(CLIP_FORMATS)}")
    RunRecord.read(args.run)  # a folder that is not a run fails here, in one line
    if args.command == "clip" and Path(args.out).exists() and not args.overwrite:
        raise RecordError(f"{args.out} already exists; choose another --out or pass --overwrite")
    done = subprocess.run([sys.executable, "-m", "dashboard.slides", args.command, str(args.run), str(args.out)],
                          capture_output=True, text=True)
    sys.stdout.write(done.stdout)  # its lines, its one-line error, as this command's own
    sys.stderr.write(done.stderr)
    return done.returncode
