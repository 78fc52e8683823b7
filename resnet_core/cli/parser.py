"""Every command's arguments, and the settings flags they share. Torch-free: ``--help`` and a bad
flag answer at once, before any command module (and torch with it) is loaded."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from typing import Any

from resnet_core.data import DATASETS, parse_dataset_args
from resnet_core.presets import get_preset
from resnet_core.errors import UserError
from resnet_core.settings import CHOICES, DEFAULTS, SETTING_META, Settings


class UsageError(UserError):
    """Raised instead of argparse's two-line usage dump; main() prints it as one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse hook
        raise UsageError(f"{self.prog}: {message}")


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Every setting as a flag. Defaults are None so that only flags given override a preset."""
    add = parser.add_argument
    add("--preset", help="start from a preset (see `presets`); explicit flags override it")
    add("--dataset", help=f"one of: {', '.join(DATASETS)}")
    add("--dataset-arg", action="append", default=[], metavar="KEY=VALUE", help=SETTING_META["dataset_args"].help)
    for name, meta in SETTING_META.items():  # the fields' own facts: choices, ranges, help
        flag = "--" + name.replace("_", "-")
        if meta.choices:
            add(flag, choices=CHOICES[name], help=meta.help)
        elif meta.range:
            lo, hi = meta.range
            add(flag, type=_typed(type(getattr(DEFAULTS, name)), flag[2:]), help=f"{meta.help} ({lo:g} to {hi:g})")
    add("--models", help=SETTING_META["models"].help)


def _typed(kind: type, name: str):
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} needs {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
    return convert


def settings_from_args(args: argparse.Namespace):
    """The Settings the flags describe: a preset (or the defaults) with explicit flags on top."""
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


def is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def add_train(sub) -> None:
    p = sub.add_parser("presets", help="list presets with one line each")
    p.set_defaults(command="presets")
    p = sub.add_parser("train", help="train models in lockstep and write a run folder")
    add_settings_flags(p)
    p.add_argument("--out", required=True, help="run folder to write (config.json, metrics.csv, layers.csv, ...)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes training the models in parallel (default: one per core, at most one per model)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (only ever a run, all of it)")
    p.add_argument("--save-models", action="store_true",
                   help="also write the trained nets: models/NAME.safetensors, a standalone models/model.py and models/data.npz")
    p.set_defaults(command="train")


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train plain and residual nets over depths and seeds; write sweep.csv")
    add_settings_flags(p)
    p.add_argument("--depths", default="8,14,20,32,44,56",
                   help="comma-separated depths (default 8,14,20,32,44,56); with --families they replace --models")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2); they replace --seed")
    p.add_argument("--families", default="plain,resnet", help="plain, resnet or both (default)")
    p.add_argument("--lrs", default=None, help="comma-separated learning rates, e.g. 0.01,0.03,0.1,0.3: every run "
                   "at each (a learning rate x depth sweep); they replace --lr")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes, one run each at a time (default: one per core)")
    p.add_argument("--out", required=True, help="folder to write sweep.csv into")
    p.add_argument("--overwrite", action="store_true", help="replace a sweep.csv already in --out")
    p.set_defaults(command="sweep")


def add_exports(sub) -> None:
    p = sub.add_parser("notebook", help="write a Jupyter notebook that reads a run folder, draws its charts and retrains it")
    p.add_argument("run", help="the run folder (written by `train --out`)")
    p.add_argument("--out", help="the notebook to write (default: RUN.ipynb beside the folder)")
    p.add_argument("--overwrite", action="store_true", help="replace a notebook already there")
    p.set_defaults(command="notebook")
    p = sub.add_parser("clip", help="a GIF or MP4 of a run: error curves and gradient heatmap growing step by step")
    p.add_argument("run", help="the run folder (written by `train --out`)")
    p.add_argument("--out", required=True, help="the clip to write: NAME.gif or NAME.mp4")
    p.add_argument("--overwrite", action="store_true", help="replace a clip already there")
    p.set_defaults(command="clip")
    p = sub.add_parser("figures", help="every chart of a run as PNG (1920x1080) and SVG, for slides")
    p.add_argument("run", help="the run folder (written by `train --out`)")
    p.add_argument("--out", required=True, help="the folder to write STEM.png and STEM.svg into")
    p.set_defaults(command="figures")


def add_lesson(sub) -> None:
    p = sub.add_parser("lesson", help="run a guided lesson and check its claim on the run (exit 0 when it showed)")
    p.add_argument("name", nargs="?", help="the lesson (see --list)")
    p.add_argument("--list", action="store_true", help="list the lessons with their titles")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the lesson's)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the lesson's)")
    p.add_argument("--out", help="run folder to write (config.json, metrics.csv, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (only ever a run, all of it)")
    p.add_argument("--workers", type=int, default=0, help="training processes (default: one per core, at most one per model)")
    p.set_defaults(command="lesson")
