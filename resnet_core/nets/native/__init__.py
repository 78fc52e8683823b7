"""The native walk of an MLP's block stack (``mlp_stack.cpp``): built once per machine, by
``python -m resnet_core.nets.native`` (``scripts/setup.sh`` runs it), and loaded where it is there.

It is optional: it gives the Python walk's numbers bit for bit, only faster (resnet-1002's step
lost the quarter the interpreter cost), so a machine without a C++ compiler trains the same runs
with the Python walk. The library is built against the torch installed and named after it and the
source, so an upgrade of either builds a new one rather than loading a stale one.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("mlp_stack.cpp")
BUILD = Path(__file__).with_name("build")


def library_path() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + sys.version.encode()).hexdigest()[:12]
    return BUILD / f"residual_lab_native-{digest}.so"


def compile_command(target: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    libs = library_paths()[0]
    return [os.environ.get("CXX", "g++"), "-O2", "-std=c++20", "-shared", "-fPIC", "-w",
            f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *(f"-I{p}" for p in include_paths()), str(SOURCE),
            f"-L{libs}", f"-Wl,-rpath,{libs}", "-lc10", "-ltorch_cpu", "-o", str(target)]


def build() -> Path:
    """Compile the library for this torch (about 10 s); raises CalledProcessError with the compiler's
    message where it fails."""
    target = library_path()
    if not target.exists():
        BUILD.mkdir(exist_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        subprocess.run(compile_command(partial), check=True, capture_output=True, text=True)
        partial.replace(target)  # whole or not at all: another process may be loading it
        for stale in BUILD.glob("residual_lab_native-*.so"):  # for an older torch or source
            if stale != target:
                stale.unlink(missing_ok=True)
    return target


_loaded: bool | None = None


def load() -> bool:
    """Whether the native walk is there (built for this torch and this source), loading it once."""
    global _loaded
    if _loaded is None:
        path = library_path()
        _loaded = path.exists() and sys.platform.startswith("linux")
        if _loaded:
            torch.ops.load_library(str(path))
    return _loaded
