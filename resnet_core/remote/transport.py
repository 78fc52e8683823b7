"""Helper processes that speak JSON lines: the one way this project runs work in other processes.

The parent starts a fresh interpreter (``python -m MODULE``) and talks to it over its stdin and
stdout, one JSON object per line. Nothing crossing the boundary is ever unpickled, and, unlike a
multiprocessing spawn, the child never re-imports the parent's ``__main__`` (under Streamlit that
is the app script; under pytest, the test runner). A child whose parent dies reads the end of its
stdin and exits, so no process outlives the server that started it.

The one such child is the worker (``resnet_core.worker``), which the dashboard's scheduler
and the command line drive alike: its ``__main__`` block sets one torch thread and calls ``serve``
with its handler.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

from resnet_core import config
from resnet_core.sizing.budget import MB, WORKER_LIMIT_ENV, worker_limit_bytes


class ProcessGone(RuntimeError):
    """The child's pipe failed: it has ended (killed, crashed) or is about to."""


class NoReply(ProcessGone):
    """No message within the deadline: the child is stopped, stuck in a loop, or far slower than it
    may be. The conversation is over (a late reply would answer the wrong question): end the child."""


class JsonProcess:
    """One child interpreter running ``python -m module``; the parent's end of the conversation."""

    def __init__(self, module: str, limit_mb: int | None = None):
        # The packages are installed (pip install -e .), so the child finds them from any folder.
        # Unbuffered bytes on both pipes: the parent reads with a deadline (select on the descriptor),
        # which a buffered reader would defeat by holding lines the descriptor no longer shows.
        # The child limits its own memory (``serve``): a run the estimate got wrong fails in it alone.
        limit = str(limit_mb) if limit_mb else os.environ.get(WORKER_LIMIT_ENV) or str(worker_limit_bytes() // MB)
        self.process = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, bufsize=0,
                                        env={**os.environ, WORKER_LIMIT_ENV: limit})
        self.broken = False
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no newline

    @property
    def pid(self) -> int:
        return self.process.pid

    def lower_priority(self, nice: int) -> None:
        """The child's niceness set ``nice`` above this process's (a server's workers give way to the
        server answering pages). Only ever lowered: raising it back needs privileges."""
        if nice <= 0:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, self.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
        except (OSError, AttributeError):
            pass  # not allowed, or not POSIX: the child runs at its parent's priority

    def send(self, msg: dict[str, Any]) -> None:
        data = memoryview((json.dumps(msg) + "\n").encode())
        try:
            while data:
                data = data[self.process.stdin.write(data):]
        except (OSError, ValueError, TypeError) as exc:
            self.broken = True
            raise ProcessGone("the process has stopped") from exc

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message; waits at most ``timeout`` seconds for it (None: as long as it takes),
        then raises NoReply and the conversation is over."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (end := self._buffer.find(b"\n", self._scanned)) < 0:
            self._scanned = len(self._buffer)
            if self.broken:
                raise ProcessGone("the process ended unexpectedly")
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                self.broken = True
                raise NoReply(f"the process sent no reply within {timeout:.0f} s")
            try:
                ready, _, _ = select.select([self.process.stdout], [], [], wait)
                chunk = os.read(self.process.stdout.fileno(), 1 << 16) if ready else None
            except (OSError, ValueError):
                chunk = b""
            if chunk == b"":
                self.broken = True
                raise ProcessGone("the process ended unexpectedly")
            if chunk:
                self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        self._scanned = 0
        try:
            return json.loads(line)
        except ValueError:  # the conversation is lost: nothing after this line can be trusted
            self.broken = True
            raise ProcessGone("the process sent something that is not a message") from None

    def ready(self) -> bool:
        """Whether ``receive`` would return (or fail) at once: a whole message has arrived, or the
        pipe has closed. Reads what is there without waiting."""
        while not self.broken and self._buffer.find(b"\n", self._scanned) < 0:
            try:
                readable, _, _ = select.select([self.process.stdout], [], [], 0)
                if not readable:
                    return False
                chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            except (OSError, ValueError):
                chunk = b""
            if chunk == b"":
                self.broken = True
            self._buffer += chunk
        return True

    def messages(self) -> Iterator[dict[str, Any]]:
        """Every message until the child ends or the conversation is lost (for a reader thread)."""
        while not self.broken:
            try:
                yield self.receive()
            except ProcessGone:
                return

    @property
    def alive(self) -> bool:
        # A killed child closes its pipe a moment before the OS reports it dead: trust the pipe.
        return not self.broken and self.process.poll() is None

    def close(self, wait_s: float = 2.0) -> None:
        """Ask the child to end; kill it if it has not within ``wait_s`` (work under way is abandoned).
        A child that is stopped (SIGSTOP) or stuck does not read the request: it is killed."""
        try:
            if not self.broken:
                self.send({"cmd": "close"})
                self.process.wait(timeout=wait_s)
        except (ProcessGone, subprocess.TimeoutExpired):
            pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def server_worker_nice() -> int:
    """How much lower a server's worker processes' CPU priority is than the server's own:
    RESIDUAL_LAB_WORKER_NICE, 10 by default. Pages first, training second: where the machine is short of
    cores (two servers behind a proxy, the class's browsers on the teacher's laptop) the kernel
    gives the server answering a click the CPU before a training step; a worker still gets every
    cycle nobody else wants. (The CLI's workers run at its own priority.)"""
    return config.get("WORKER_NICE")


def limit_memory() -> None:
    """This process's data segment (heap and private mappings, where tensors live) capped at
    ``RESIDUAL_LAB_WORKER_MEMORY_MB``, which the parent passes (0: no cap): past it an allocation
    fails here (MemoryError, or torch's "can't allocate memory"), is reported as this run's error,
    and the machine and every other session go on. RLIMIT_DATA rather than RLIMIT_AS: a GPU driver
    reserves address space it never fills."""
    mb = config.get("WORKER_MEMORY_MB")
    if not mb:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = mb * MB if hard == resource.RLIM_INFINITY else min(mb * MB, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def exit_now(code: int = 0) -> None:
    """End this process once its output is out, skipping the interpreter's teardown: with torch
    loaded, freeing every module and tensor one by one takes a noticeable part of a short run, and
    nothing is left to do (every file this project writes is closed when its work is)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(code)


def serve(handle: Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], None]) -> None:
    """The child's side: ``handle(message, send)`` for each line on stdin, until ``{"cmd": "close"}``,
    the end of stdin, or a reply that cannot be sent (both mean the parent has gone: a server
    stopping while its worker answers is not an error to log)."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    # Nothing else may write into the protocol: Python's prints and C libraries' writes to file
    # descriptor 1 both go to stderr (the server's log) from here on.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    limit_memory()

    def send(msg: dict[str, Any]) -> None:
        protocol.write(json.dumps(msg) + "\n")  # line-buffered: each message leaves at once

    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("cmd") == "close":
            return
        try:
            handle(msg, send)
        except (BrokenPipeError, ConnectionResetError):
            return
