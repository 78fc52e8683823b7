"""The run cache shared: processes putting one key at once leave one whole entry, a reader racing
evictions gets a whole run or none, a half-written folder is never served, and the server's side
of it imports no torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

from dashboard.runtime import replay
from dashboard.runtime.run_cache import INCOMING, RunCache, run_key
from resnet_core.settings import Settings
from run_cache_runs import MLP, REPO, assert_same_run, train


# -------------------------------------------------------------------------------- atomicity

PUT_FROM_A_PROCESS = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from dashboard.runtime.run_cache import RunCache, run_key
    from resnet_core.settings import Settings
    from resnet_core.analysis.recorders import standard
    from resnet_core.training.lockstep import LockstepTrainer
    settings = Settings.from_dict(json.loads(sys.argv[1]))
    root, go = Path(sys.argv[2]), Path(sys.argv[3])
    record = LockstepTrainer(settings, recorders=standard()).run()
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    print(RunCache(root, limit_mb=50).put(run_key(settings), record), flush=True)
""")


def test_two_processes_putting_one_key_leave_one_whole_entry(tmp_path):
    settings = MLP.with_changes(steps=10, paths_every=0)  # no path analysis: its first call is slow
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", PUT_FROM_A_PROCESS, json.dumps(settings.to_dict()),
                               str(tmp_path / "cache"), str(go)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        go.touch()  # both trained: now both put at once
        results = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sorted(results) == ["False", "True"], results
    cache = RunCache(tmp_path / "cache", limit_mb=50)
    assert cache.keys() == [run_key(settings)]
    assert not any((cache.root / INCOMING).iterdir())
    # and the run another process stored is the run this one trains
    assert_same_run(cache.get(run_key(settings)), train(settings))


def test_a_half_written_folder_is_never_served(tmp_path, tiny_runs):
    (key, record), (other_key, other) = list(tiny_runs.items())[:2]
    runs = tmp_path / "runs"
    cache = RunCache(runs / "cache", limit_mb=50)
    # a process died while writing: its temporary folder holds some of the files
    crashed = cache.root / INCOMING / f"{key}.99999.dead"
    record.write(crashed)
    (crashed / "layers.csv").unlink()
    # and a folder under the key's own name that no put made (copied in by hand, say)
    record.write(cache.path(key))
    (cache.path(key) / "metrics.csv").write_text("step,model\n")
    assert cache.get(key) is None and not cache.contains(key)
    assert replay.run_folders(runs) == [f"cache/{key}"]  # temporary folders are never listed for replay
    # a put goes ahead beside the leftovers and replaces the stray folder with a whole entry
    fresh = cache.root / INCOMING / f"{other_key}.99998.writing"  # another process, still writing
    record.write(fresh)
    assert cache.put(key, record)
    assert_same_run(cache.get(key), record, wall_s=True)
    # a later put clears the temporary folders left over an hour ago, not the ones being written
    old = time.time() - 2 * 3600
    os.utime(crashed, (old, old))
    assert cache.put(other_key, other)
    assert not crashed.exists() and fresh.exists()
    assert sorted(cache.keys()) == sorted([key, other_key])


def test_the_server_side_imports_no_torch(tmp_path, tiny_runs):
    key, record = next(iter(tiny_runs.items()))
    RunCache(tmp_path, limit_mb=50).put(key, record)
    script = textwrap.dedent(f"""
        import sys
        from dashboard.runtime.run_cache import RunCache, run_key, record_until
        from resnet_core.settings import Settings
        run_key(Settings()); run_key(Settings(dataset="digits", arch="cnn", models=("resnet-8",)))
        cache = RunCache({str(tmp_path)!r}, limit_mb=50)
        record_until(cache.get({key!r}), 2)
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


EVICT_AND_PUT_AGAIN = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from dashboard.runtime.run_cache import RunCache, run_key
    from resnet_core.settings import Settings
    from resnet_core.analysis.recorders import standard
    from resnet_core.training.lockstep import LockstepTrainer
    runs = [LockstepTrainer(Settings.from_dict(json.loads(a)), recorders=standard()).run() for a in sys.argv[2:4]]
    keys = [run_key(Settings.from_dict(json.loads(a))) for a in sys.argv[2:4]]
    cache = RunCache(sys.argv[1], limit_mb=float(sys.argv[4]))
    print("ready", flush=True)
    for i in range(24):  # room for one entry: each put evicts the least recently used key
        cache.put(keys[i % 2], runs[i % 2])
""")


def test_a_reader_racing_evictions_gets_a_whole_run_or_none(tmp_path, tiny_runs):
    """One process puts two keys in turn into a cache with room for one, so each put evicts the
    other; meanwhile this one reads the first key again and again."""
    (key, record), (other_key, other) = list(tiny_runs.items())[:2]
    probe = RunCache(tmp_path / "probe", limit_mb=50)
    probe.put(key, record)
    limit_mb = 1.5 * probe.size_bytes() / 2**20
    settings = [json.dumps(Settings.from_dict(r.config["settings"]).to_dict()) for r in (record, other)]
    writer = subprocess.Popen([sys.executable, "-c", EVICT_AND_PUT_AGAIN, str(tmp_path / "cache"), *settings,
                               str(limit_mb)], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cache = RunCache(tmp_path / "cache", limit_mb=limit_mb)
    served = []
    try:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        while writer.poll() is None:
            got = cache.get(key)
            if got is not None:
                served.append(got)
        assert writer.returncode == 0, writer.stderr.read()
    finally:
        if writer.poll() is None:
            writer.kill()
    for got in served:
        assert_same_run(got, record)
    assert len(cache.keys()) == 1 and not any((cache.root / INCOMING).iterdir())
