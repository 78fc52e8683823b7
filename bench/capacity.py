"""How many students one server holds: sessions open, one in three training, until a click waits too long
or memory runs short.

    .venv/bin/python bench/capacity.py [--through-proxy N] [--ladder 10,20,30,40,60,80] [--seconds 30]

Starts the server as ``scripts/app.sh`` does (or ``scripts/serve-class.sh --processes N``), then
climbs the ladder: at each rung it opens sessions up to that count (every third one presses Train,
on a setting of its own: the degradation lesson with its own seed, so the training is divided, not
shared), and every open session re-runs its page every 2.5-7.5 s (a student changing something, as
``load_test.py``). Over ``--seconds`` at each rung it prints the interaction p95 (a full rerun, from
the request to the page drawn), the machine's memory in use, and the served processes' memory. The
capacity is the last rung below both limits: interaction p95 0.5 s and 80 % of memory. It stops
at the first rung past either.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import psutil

from class_serving import serving
from load_test import TimedClient, quantile, step_of

P95_LIMIT_S = 0.5
MEMORY_LIMIT = 80.0  # % of the machine's memory in use
THINK_S = 5.0


def served_rss_mb(served) -> float:
    total = 0
    for proc in served.servers + ([served.proxy] if served.proxy else []):
        try:
            total += proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            pass
    return total / 2**20


def climb(through_proxy: int, ladder: list[int], seconds: float) -> list[dict]:
    log_dir = Path(tempfile.mkdtemp(prefix="residual-lab-capacity-"))
    rows: list[dict] = []
    with serving(through_proxy, log_dir, {"RESIDUAL_LAB_RUN_CACHE": str(log_dir / "cache")}) as (url, served, _):
        warm = TimedClient(url)
        warm.run(timeout=120)
        warm.close()
        clients: list[TimedClient] = []
        stop_all = threading.Event()

        def student(c: TimedClient, rng: random.Random) -> None:
            while not stop_all.is_set():
                time.sleep(THINK_S * rng.uniform(0.5, 1.5))
                if stop_all.is_set():
                    return
                try:
                    c.interactions.append(c.run(timeout=60))
                except TimeoutError:
                    c.interactions.append(float("inf"))

        try:
            for rung in ladder:
                while len(clients) < rung:
                    i = len(clients)
                    trains = i % 3 == 0
                    c = TimedClient(url, f"preset=degradation&seed={100 + i}&steps=100000" if trains else "preset=degradation")
                    c.run(timeout=120)
                    if trains:
                        c.click("Train", timeout=120)
                    clients.append(c)
                    threading.Thread(target=student, args=(c, random.Random(i)), daemon=True).start()
                for c in clients:
                    c.interactions.clear()
                steps0 = {id(c): step_of(c) or 0 for c in clients[::3]}
                time.sleep(seconds)
                inter = [x for c in clients for x in c.interactions]
                moved = [(step_of(c) or 0) - steps0[id(c)] for c in clients[::3]]
                row = {"sessions": rung, "training": len(clients[::3]), "interactions": len(inter),
                       "p95_s": quantile(inter, 0.95) if inter else float("nan"),
                       "memory_pct": psutil.virtual_memory().percent, "served_mb": served_rss_mb(served),
                       "steps_per_s_each": sorted(moved)[len(moved) // 2] / seconds if moved else 0.0}
                rows.append(row)
                print(f"{rung:4d} sessions ({row['training']} training): interaction p95 {row['p95_s']:.2f} s "
                      f"over {row['interactions']}, memory {row['memory_pct']:.0f} % (served {row['served_mb']:.0f} MB), "
                      f"{row['steps_per_s_each']:.1f} steps/s per training session (median)", flush=True)
                if row["p95_s"] > P95_LIMIT_S or row["memory_pct"] > MEMORY_LIMIT:
                    break
        finally:
            stop_all.set()
            for c in clients:
                c.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--through-proxy", type=int, default=0, metavar="N",
                        help="serve through scripts/serve-class.sh --processes N (default: one server)")
    parser.add_argument("--ladder", default="10,20,30,40,60,80,120", help="session counts to climb")
    parser.add_argument("--seconds", type=float, default=30.0, help="of interaction at each rung")
    args = parser.parse_args()
    try:
        ladder = sorted({int(x) for x in args.ladder.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--ladder takes whole numbers separated by commas, not {args.ladder!r}")
    if not ladder or ladder[0] < 1 or args.through_proxy < 0 or args.seconds <= 0:
        parser.error("--ladder needs counts of 1 or more, --through-proxy 0 or more, --seconds above 0")
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, load average "
          f"{os.getloadavg()[0]:.2f} before the run; serving: "
          f"{f'serve-class.sh --processes {args.through_proxy}' if args.through_proxy else 'one server (scripts/app.sh)'}")
    rows = climb(args.through_proxy, ladder, args.seconds)
    fits = [r["sessions"] for r in rows if r["p95_s"] <= P95_LIMIT_S and r["memory_pct"] <= MEMORY_LIMIT]
    print(f"capacity: {max(fits) if fits else 'under ' + str(ladder[0])} sessions open, one in three training "
          f"(interaction p95 <= {P95_LIMIT_S} s, memory <= {MEMORY_LIMIT:.0f} %)")


if __name__ == "__main__":
    main()
