"""Long runs stay bounded: what the server holds and what one page refresh costs, at step 1,000,
10,000 and the end of a long run, with the run folder growing beside it.

    .venv/bin/python bench/soak.py            # resnet-1002 probed every step for 20,000 steps, and
                                              # six models evaluated every step for 100,000 steps
    .venv/bin/python bench/soak.py --quick    # the same two runs, 5,000 and 12,000 steps

Training 20,000 steps of a 1002-layer net takes hours on two cores, and what the server holds and
draws does not depend on how the numbers were made. So this bench does not train: it feeds a
``RunRecord`` synthetic measurements of exactly the shape a training worker sends (a fresh
float64 vector per layer field per probed model and step, an evaluation row per model and step,
the path analysis every 50 steps, a 48 x 48 decision map every third evaluation), through the
same calls the job thread makes, with the record streaming every row to a run folder as a live
run does. A page refresh is timed as the server does it: the header's cards, the training curves,
the gradient heatmaps and profiles, the response and branch-ratio profiles and the unrolled-paths
charts, built by the real chart builders in ``dashboard/charts/`` from the panel data functions of
``dashboard/panels/``, then serialised to JSON as Streamlit sends them.

Server memory is this process's resident set (it imports what the server imports); the goal is
that memory and refresh cost stay flat (within 20 %) from step 1,000 to the end.
"""
from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dashboard.charts as charts  # noqa: E402
import dashboard.charts.layers as charts_layers  # noqa: E402
import dashboard.charts.paths as charts_paths  # noqa: E402
from dashboard.panels.live import HEATMAP_STEPS, first, latest  # noqa: E402
from resnet_core.analysis.paths import path_counts, summary_from_rows  # noqa: E402
from resnet_core.records import LayerSnapshot, RunRecord  # noqa: E402
from resnet_core.settings import Settings  # noqa: E402

CASES = {
    "resnet-1002, probed every step": dict(models=("resnet-1002",), block="pre", probe_every=1, steps=20_000),
    "six models, evaluated every step": dict(models=("plain-20", "resnet-20", "plain-56", "resnet-56", "plain-110",
                                                     "resnet-110"), probe_every=2, steps=100_000),
}
QUICK_STEPS = {"resnet-1002, probed every step": 5_000, "six models, evaluated every step": 12_000}
PATHS_EVERY = 50
REGION_EVERY = 3
REGION_N = 48


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20


class Feed:
    """Synthetic measurements of a run's shape, recorded the way the job thread records them."""

    def __init__(self, settings: Settings, record: RunRecord, seed: int = 0):
        self.s, self.record = settings, record
        self.rng = np.random.default_rng(seed)
        self.depth = {m.name: m.depth for m in settings.model_specs}
        self.blocks = {m.name: settings.blocks_for(m.depth) for m in settings.model_specs}
        self.lengths = {m: min(b + 1, 150) for m, b in self.blocks.items()}  # the kept path lengths

    def step(self, step: int) -> None:
        s, r = self.s, self.record
        if step % s.probe_every == 0:
            for model, depth in self.depth.items():
                scale = np.exp(self.rng.normal(0, 1, depth))
                ratio = np.full(depth, np.nan)
                if model.startswith("resnet"):
                    ratio[2::2] = 0.1 * scale[2::2]
                r.add_layers(model, LayerSnapshot(step, scale * 0.01, scale * 0.5, ratio))
        decay = 1.0 / (1.0 + step / 1000)
        r.add_metrics([{"step": step, "model": m, "train_loss": decay * (1 + 0.1 * self.rng.random()),
                        "train_error": 0.5 * decay, "test_error": 0.55 * decay, "wall_s": step * 0.01, "status": "ok"}
                       for m in self.depth])
        if step % REGION_EVERY == 0:
            for model in self.depth:
                r.set_regions(model, step, {"x": [-1.1, 1.1], "y": [-1.1, 1.1], "n": REGION_N,
                                            "classes": self.rng.integers(0, 3, REGION_N ** 2).tolist(),
                                            "confidence": np.round(self.rng.random(REGION_N ** 2), 3).tolist()})
        if step % PATHS_EVERY == 0:
            for model in (m for m in self.depth if m.startswith("resnet")):
                k = self.lengths[model]
                share = np.exp(-0.5 * ((np.arange(k) - k / 4) / (k / 10)) ** 2)
                share /= share.sum()
                counts = path_counts(self.blocks[model])[:k]
                r.add_paths([{"step": step, "model": model, "length": i, "n_paths": float(counts[i]),
                              "grad_norm": float(share[i]), "share": float(share[i]), "residual": 1e-5,
                              "path_norm": float(share[i] / max(counts[i], 1.0))} for i in range(k)])


def refresh(record: RunRecord, models: list[str], blocks: dict[str, int]) -> tuple[float, float, int]:
    """(CPU seconds to build the figures, to serialise them, bytes sent) for one refresh. CPU time, not
    wall time: the server does this single-threaded, and on a shared machine the wall clock also
    counts whoever else had the core."""
    started = time.process_time()
    metrics = record.metrics_frame()
    charts.model_cards(metrics, models)
    figures = [charts.error_figure(metrics, models)]
    figures.append(charts_layers.gradient_heatmaps(
        {m: record.layer_matrix(m, "grad_norm", max_steps=HEATMAP_STEPS) for m in models}))
    figures.append(charts_layers.profile_figure(latest(record, models, "grad_norm"), "‖∂L/∂W‖ (latest probe)"))
    figures.append(charts_layers.profile_figure(latest(record, models, "act_std"), "std of the layer's response"))
    residual = [m for m in models if m.startswith("resnet")]
    now = {m: (s, charts_layers.block_values(v)) for m, (s, v) in latest(record, residual, "branch_ratio").items()}
    then = {m: (s, charts_layers.block_values(v)) for m, (s, v) in first(record, residual, "branch_ratio").items()}
    figures.append(charts_layers.branch_ratio_figure(now, then))
    paths = record.paths_frame()
    for model in residual[:1]:  # the paths panel shows one residual model at a time
        mine = paths[paths["model"] == model]
        rows = mine[mine["step"] == mine["step"].max()]
        summary_from_rows(rows)
        figures += [charts_paths.length_figure(rows, blocks[model]), charts_paths.per_path_figure(rows),
                    charts_paths.mean_length_figure(mine, blocks[model])]
    built = time.process_time()
    sent = sum(len(f.to_json()) for f in figures if f is not None)
    return built - started, time.process_time() - built, sent


def soak(name: str, values: dict, steps: int, root: Path) -> list[dict]:
    settings = Settings(**{**values, "steps": steps, "eval_every": 1}).checked()
    models = list(settings.models)
    names = {m.name: ["stem", *[f"block{i // 2 + 1}.{i % 2 + 1}" for i in range(m.depth - 2)], "head"]
             for m in settings.model_specs}
    record = RunRecord({"settings": settings.to_dict(), "models": [{"name": m, "depth": len(names[m])} for m in models]},
                       names)
    folder = record.stream_to(root / name.split(",")[0])
    feed = Feed(settings, record)
    blocks = dict(feed.blocks)
    rows = []
    checkpoints = sorted({1_000, 10_000, steps} & set(range(1, steps + 1)))
    started = time.perf_counter()
    for step in range(steps + 1):
        feed.step(step)
        if step in checkpoints:
            record.flush()
            timings = [refresh(record, models, blocks) for _ in range(5)]
            build, serialise = (float(np.median([t[i] for t in timings])) for i in (0, 1))  # the median of five
            sent = timings[0][2]
            rows.append({"case": name, "step": step, "rss_mb": rss_mb(), "build_s": build, "json_s": serialise,
                         "sent_kb": sent / 1024, "folder_mb": folder_mb(folder),
                         "feed_s": time.perf_counter() - started})
            r = rows[-1]
            print(f"{name:34} {step:>7,} {r['rss_mb']:>8.0f} {r['build_s']:>8.3f} {r['json_s']:>8.3f} "
                  f"{r['sent_kb']:>9,.0f} {r['folder_mb']:>10,.0f} {r['feed_s']:>8.0f}", flush=True)
    record.close_stream()
    return rows


HEADER = (f"{'run':34} {'step':>7} {'RSS MB':>8} {'build s':>8} {'JSON s':>8} {'sent KB':>9} {'folder MB':>10} "
          f"{'fed in s':>8}\n(build and JSON: CPU seconds of one refresh, the median of five)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 and 12,000 steps instead of 20,000 and 100,000")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # one run, in this process
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        rows = soak(args.case, CASES[args.case], args.steps, Path(args.root))
        a, b = rows[0], rows[-1]
        refresh_change = (b["build_s"] + b["json_s"]) / (a["build_s"] + a["json_s"]) - 1
        print(f"SUMMARY {args.case}: from step {a['step']:,} to {b['step']:,} memory "
              f"{100 * (b['rss_mb'] / a['rss_mb'] - 1):+.0f} %, refresh {100 * refresh_change:+.0f} %, "
              f"sent {100 * (b['sent_kb'] / a['sent_kb'] - 1):+.0f} %; run folder {b['folder_mb']:,.0f} MB")
        return
    print(HEADER, flush=True)
    summaries = []
    for name, values in CASES.items():  # each run in a fresh process, so one's memory is not the other's
        steps = QUICK_STEPS[name] if args.quick else values["steps"]
        root = Path(tempfile.mkdtemp(prefix="soak-"))
        try:
            done = subprocess.run([sys.executable, __file__, "--case", name, "--steps", str(steps), "--root",
                                   str(root)], capture_output=True, text=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        lines = done.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("SUMMARY")), flush=True)
        summaries += [line[len("SUMMARY "):] for line in lines if line.startswith("SUMMARY")]
        if done.returncode:
            print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    print()
    print("\n".join(summaries))


if __name__ == "__main__":
    main()
