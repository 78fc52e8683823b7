"""``lesson``: run one guided lesson headless, print its verdict with the figures, write the run.

Exit status 0 when the claim showed on this run, 1 when it did not, 2 for bad arguments; so a
lesson can be checked in a script or CI exactly as the dashboard checks it live.
"""
from __future__ import annotations

import argparse
import sys
import time

from resnet_core.cli.output import RunFolder
from resnet_core.cli.train import train_headless
from resnet_core.cli.workers import check_workers
from resnet_core.lessons import LESSONS, get_lesson
from resnet_core.settings import SettingsError

MARKS = {"shown": "✓ shown", "not yet": "… not yet", "not shown": "✗ not shown"}


def run(args: argparse.Namespace) -> int:
    _utf8_or_replace()
    if args.list:
        for lesson in LESSONS.values():
            print(f"{lesson.name:20} {lesson.title}")
        return 0
    if not args.name:
        raise SettingsError(f"lesson: name a lesson ({', '.join(LESSONS)}) or pass --list")
    lesson = get_lesson(args.name)
    if not args.out:
        raise SettingsError("lesson: --out DIR is required (the run folder to write)")
    changes = {k: v for k, v in (("seed", args.seed), ("steps", args.steps)) if v is not None}
    settings = lesson.settings(**changes)
    check_workers(args.workers)
    out = RunFolder(args.out, args.overwrite)
    print(f"{lesson.title}  (models {', '.join(settings.models)}; {settings.steps} steps; seed {settings.seed})")
    started = time.perf_counter()
    record = train_headless(settings, args.workers, analyses=tuple(lesson.after_training), out=out)
    seconds = time.perf_counter() - started
    verdict = lesson.check(record)
    print(f"{MARKS.get(verdict.state, verdict.state)}: {verdict.summary}")
    for line in verdict.details:
        print(f"  - {line}")
    print(f"{record.latest_step()} steps in {seconds:.1f} s; wrote {out.target}/")
    return 0 if verdict.shown else 1


def _utf8_or_replace() -> None:
    """The verdicts use a few symbols (✓, ‖F(x)‖); a terminal that cannot show them gets '?'."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
