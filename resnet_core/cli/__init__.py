"""``python -m resnet_core``: train a preset or any settings headless and write the run folder.

Bad arguments end with exit status 2 and one line on stderr saying what is wrong and what is
allowed; nothing is written until every argument has been checked and the data loaded.
Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args)``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from resnet_core.data import DataError
from resnet_core.records import RecordError
from resnet_core.settings import SettingsError

USER_ERRORS = (SettingsError, DataError, RecordError)


class UsageError(Exception):
    """Raised instead of argparse's two-line usage dump; main() prints it as one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D102 - argparse hook
        raise UsageError(f"{self.prog}: {message}")


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Every setting as a flag. Defaults are None so that only flags given override a preset."""
    from resnet_core.data import DATASETS
    from resnet_core.settings import CHOICES

    add = parser.add_argument
    add("--preset", help="start from a preset (see `presets`); explicit flags override it")
    add("--dataset", help=f"one of: {', '.join(DATASETS)}")
    add("--dataset-arg", action="append", default=[], metavar="KEY=VALUE", help="a dataset option, repeatable")
    add("--models", help="comma-separated, e.g. plain-20,plain-56,resnet-56")
    for name in ("arch", "block", "norm", "shortcut", "init", "optimizer", "device"):
        add(f"--{name}", choices=CHOICES[name])
    for name, kind in (("width", int), ("branch-layers", int), ("stages", int), ("steps", int), ("seed", int),
                       ("lr", float), ("momentum", float), ("weight-decay", float), ("batch-size", int),
                       ("eval-every", int), ("probe-every", int), ("paths-every", int)):
        add(f"--{name}", type=_typed(kind, name))


def _typed(kind: type, name: str):
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} needs {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
    return convert


def settings_from_args(args: argparse.Namespace):
    """The Settings the flags describe: a preset (or the defaults) with explicit flags on top."""
    from resnet_core.data import parse_dataset_args
    from resnet_core.presets import get_preset
    from dataclasses import fields

    from resnet_core.settings import Settings

    changes: dict[str, Any] = {}
    for f in fields(Settings):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in ("dataset_args", "models"):
            changes[f.name] = value
    if args.models is not None:
        changes["models"] = args.models
    base = get_preset(args.preset).overrides if args.preset else {}
    merged = {**base, **changes}
    dataset = merged.get("dataset", Settings().dataset)
    given = parse_dataset_args(dataset, args.dataset_arg) if args.dataset_arg else {}
    if "dataset" in changes and changes["dataset"] != base.get("dataset"):
        merged["dataset_args"] = given  # a different data set: the preset's options do not apply
    else:
        merged["dataset_args"] = {**base.get("dataset_args", {}), **given}
    return Settings.from_dict(merged)


def build_parser() -> argparse.ArgumentParser:
    import resnet_core.cli.train as cli_train  # each command in its own module
    import resnet_core.cli.sweep as cli_sweep  # each command in its own module
    import resnet_core.cli.lesson as cli_lesson  # each command in its own module

    parser = OneLineParser(prog="python -m resnet_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in (cli_train, cli_sweep, cli_lesson):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.run(args) or 0)
    except UsageError as exc:
        return _fail(str(exc))
    except USER_ERRORS as exc:
        return _fail(f"error: {exc}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(" ".join(message.split()), file=sys.stderr)
    return 2


def is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
