"""The one transport to worker processes (resnet_core.remote.transport): what a child prints cannot
corrupt the conversation, a child that dies is reported as gone, never as a hang, and one that
stops answering is noticed at the reply's deadline."""
from __future__ import annotations

import os
import signal
import time

import pytest

from resnet_core.remote.transport import JsonProcess, NoReply, ProcessGone

NOISY_CHILD = '''
import os
from resnet_core.remote.transport import serve

def handle(msg, send):
    print("a library's print")
    os.write(1, b"a C library writing to file descriptor 1\\n")
    send({"echo": msg["x"]})

serve(handle)
'''


# A child that does not speak the protocol at all.
GARBLED_CHILD = '''
import sys
sys.stdout.write("not a message\\n")
sys.stdout.flush()
sys.stdin.read()
'''


@pytest.fixture(autouse=True)
def children(tmp_path, monkeypatch):
    (tmp_path / "noisy_child.py").write_text(NOISY_CHILD)
    (tmp_path / "garbled_child.py").write_text(GARBLED_CHILD)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))


@pytest.fixture
def child():
    process = JsonProcess("noisy_child")
    yield process
    process.close()


def test_what_a_child_prints_goes_to_stderr_not_into_the_protocol(child):
    for x in (1, "two", [3.5]):
        child.send({"x": x})
        assert child.receive() == {"echo": x}
    assert child.alive


def test_a_child_that_dies_is_gone_not_a_hang(child):
    child.send({"x": 1})
    assert child.receive() == {"echo": 1}
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(ProcessGone):
        child.receive()
    assert not child.alive
    child.process.wait(timeout=5)  # its end of the stdin pipe is closed once it has exited
    with pytest.raises(ProcessGone):
        child.send({"x": 2})


def test_a_child_that_stops_answering_is_noticed_at_the_deadline_and_closed(child):
    os.kill(child.pid, signal.SIGSTOP)  # as good as a hang: alive, and silent
    child.send({"x": 1})
    with pytest.raises(NoReply, match="no reply within 1 s"):
        child.receive(timeout=1.0)
    assert not child.alive  # the conversation is over: a late reply would answer the wrong question
    child.close()
    assert child.process.poll() is not None  # killed, although it could not read the request to end


def test_close_ends_the_child(child):
    child.close()
    assert child.process.poll() is not None and not child.alive


def test_a_line_that_is_not_a_message_ends_the_conversation():
    garbled = JsonProcess("garbled_child")
    try:
        with pytest.raises(ProcessGone, match="not a message"):
            garbled.receive()
        assert not garbled.alive
        assert list(garbled.messages()) == []  # a reader thread ends instead of dying on it
    finally:
        garbled.close()


def niceness(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads niceness from /proc (Linux)")
def test_a_server_s_workers_give_way_to_the_server_once_warm_and_the_cli_s_do_not():
    from resnet_core.scheduling.scheduler import Scheduler

    ours = niceness(os.getpid())
    plain = JsonProcess("noisy_child")
    scheduler = Scheduler(size=1, warm=True)  # the first host starts and warms its process at once
    try:
        plain.send({"x": 1})
        assert plain.receive(timeout=60) == {"echo": 1}
        assert niceness(plain.pid) == ours  # the CLI's and ParallelTrainer's workers: as their parent
        deadline = time.monotonic() + 120  # warmed at the server's priority, then pages first
        while not (scheduler.hosts[0].warm_s and scheduler.pids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert niceness(scheduler.pids()[0]) == min(19, ours + 10)
    finally:
        plain.close()
        scheduler.close()


SLOW_CHILD = '''
import time
from resnet_core.remote.transport import exit_now, serve

def handle(msg, send):
    time.sleep(0.5)  # the parent goes away meanwhile
    send({"echo": msg["x"]})

serve(handle)
exit_now()
'''


def test_a_child_whose_parent_goes_while_it_answers_ends_without_a_traceback(tmp_path):
    """A server stopping while its worker is mid-step: the reply finds no reader. The child ends
    quietly, as at the end of its stdin; a traceback would land in the server's log."""
    import subprocess
    import sys

    (tmp_path / "slow_child.py").write_text(SLOW_CHILD)
    child = subprocess.Popen([sys.executable, "-m", "slow_child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    child.stdin.write(b'{"x": 1}\n')
    child.stdin.flush()
    child.stdout.close()  # nobody reads the reply any more
    child.stdin.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=30) == 0 and "Traceback" not in err, err
