"""The server's scratch folder after a kill -9 (issue 20, item 13): the uploads and run files of a
server process that was killed stay on disk until the next server process starts, which sweeps the
folders of processes no longer running, and only those."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

KILLED = textwrap.dedent("""
    import os, signal
    import dashboard.runtime.scratch as scratch
    run = scratch.new_run_folder()
    (run / "layers.csv").write_bytes(b"0" * 100_000)
    (scratch.uploads() / "points.csv").write_text("x1,x2,label\\n")
    print(scratch.root(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit: the folder stays
""")

STARTS = textwrap.dedent("""
    import dashboard.runtime.scratch as scratch
    print(scratch.root())
""")


def run(script: str, tmp: Path) -> str:
    env = {"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env).stdout.strip()


def test_a_killed_servers_scratch_folder_is_swept_by_the_next_server(tmp_path):
    left = Path(run(KILLED, tmp_path))
    assert (left / "uploads" / "points.csv").exists() and any((left / "runs").iterdir())  # what kill -9 leaves
    live = tempfile.mkdtemp(prefix="residual-lab-1-", dir=tmp_path)  # pid 1 runs: a live process's folder
    other = tmp_path / "residual-lab-notes"  # not a server's
    other.mkdir()
    fresh = Path(run(STARTS, tmp_path))
    assert not left.exists()
    assert Path(live).exists() and other.exists() and not fresh.exists()  # the new one cleans up after itself
