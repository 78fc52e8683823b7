"""``python -m resnet_core``: train a preset or any settings headless and write the run folder.

Bad arguments end with exit status 2 and one line on stderr saying what is wrong and what is
allowed; nothing is written until every argument has been checked and the data loaded.
``parser`` holds every command's arguments; each command's work lives in a module of its own
with ``run(args)``, imported only when that command runs.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from resnet_core.cli.parser import OneLineParser, UsageError, add_exports, add_lesson, add_sweep, add_train
from resnet_core import config
from resnet_core.errors import UserError, one_line
from resnet_core.remote.worker_process import WorkerError

COMMANDS = {"presets": "resnet_core.cli.presets", "train": "resnet_core.cli.train",
            "sweep": "resnet_core.cli.sweep", "lesson": "resnet_core.cli.lesson",
            "notebook": "resnet_core.cli.notebook", "clip": "resnet_core.cli.clip", "figures": "resnet_core.cli.clip"}


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m resnet_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add in (add_train, add_sweep, add_lesson, add_exports):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config.load_plugins()  # block variants of one's own, before the parser lists the choices
        args = build_parser().parse_args(argv)
        return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
    except UsageError as exc:
        return _fail(str(exc))
    except UserError as exc:
        return _fail(f"error: {exc}")
    except WorkerError as exc:  # a worker process failed or ended: its one line, not a traceback
        print(one_line(f"error: {exc}"), file=sys.stderr)
        return 2 if exc.user else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(one_line(message), file=sys.stderr)
    return 2
