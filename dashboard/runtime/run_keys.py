"""Run keys: what a run is a pure function of, hashed (the run cache's index; see run_cache.py).

What a key promises. Two runs with one key give the same tables, bit for bit, except ``wall_s``:
checked on CPU with one torch thread (how every trainer here trains), for MLPs and CNNs, BN on and
off, every block, shortcut, init and optimizer (``tests/test_run_cache.py``). What goes in a key:

- the settings, ``Settings.checked().to_dict()``, with ``device`` as the kind of device the run
  trains on ("auto" and "cpu" are one key on a machine without a GPU), and the data set's arguments
  with their defaults filled in (``{}`` and ``{"arms": 3}`` are one spirals key);
- a data set read from files (a points CSV, CIFAR-10, the digits file) by the content of those
  files, never their path: the same upload is one key wherever it lies, and a file edited in place
  is a new key;
- the versions of residual-lab, torch and numpy, the machine type, and a digest of the
  ``resnet_core`` sources, so that any change to the code that trains starts new keys.

Not promised: results on CUDA are not bit-reproducible in general (a cached GPU run is one valid
run of that key, not the one a second GPU run would give); torch with more than one intra-op
thread can differ in the last bits (every trainer here uses one); two machines of one type whose
CPUs take different kernel paths (AVX2 vs AVX-512) may differ in the last bits. A run whose
settings were changed while it trained (the learning-rate slider, a new step count) is not a run of
its first key: ``put`` refuses a record whose config does not give the key it is put under.

This module imports no torch: the dashboard's server uses it, and the server never loads torch.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import threading
from pathlib import Path
from typing import Any

import resnet_core
from resnet_core.data import DATA_DIR, DATASETS, DataError
from resnet_core.data import _with_defaults as dataset_args_with_defaults
from resnet_core.data import files as data_files
from resnet_core.records import RunRecord
from resnet_core.settings import Settings, SettingsError

KEY_FORMAT = 1         # part of every key: bump it when what goes into a key changes
TORCH_THREADS = 1      # part of every key: the intra-op threads every trainer here uses
KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def run_key(settings: Settings, *, device: str | None = None, versions: dict[str, str] | None = None) -> str:
    """The content key of a run: sha256 of the canonical JSON of ``key_inputs``. ``device``: the
    device the run trains on ("cpu", "cuda" or "cuda:0"), where the caller knows it; by default
    the settings' device, with "auto" resolved as torch would resolve it here (see ``auto_device``).
    ``versions`` replaces ``code_versions()``. Raises SettingsError or DataError for settings that
    cannot train."""
    payload = key_inputs(settings, device=device, versions=versions)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def key_inputs(settings: Settings, *, device: str | None = None, versions: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything a key is made of, as plain JSON values (stored beside each entry in cache.json)."""
    checked = settings.checked()
    values = checked.to_dict()
    values["device"] = device_kind(device if device is not None else checked.device)
    values["dataset_args"] = dataset_identity(checked.dataset, checked.dataset_args)
    return {"format": KEY_FORMAT, "settings": values, "torch_threads": TORCH_THREADS,
            "versions": dict(versions) if versions is not None else code_versions()}


def record_key(record: RunRecord) -> str:
    """The key of the run a record holds, from its config (the settings it started with and the
    device it trained on)."""
    config = record.config
    try:
        settings = Settings.from_dict(config.get("settings", {}))
    except (SettingsError, TypeError) as exc:
        raise ValueError(f"the record's settings cannot be read: {exc}") from None
    return run_key(settings, device=config.get("device") or None)


def device_kind(name: str) -> str:
    """"cpu" or "cuda" for a device name ("auto" resolved by ``auto_device``)."""
    kind = str(name).split(":", 1)[0]
    if kind == "auto":
        return auto_device()
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda (got {name!r})")
    return kind


def auto_device() -> str:
    """What ``device="auto"`` trains on here, found without importing torch: "cuda" when the
    installed torch is built with CUDA, CUDA_VISIBLE_DEVICES does not hide every GPU and an NVIDIA
    device node exists; else "cpu". Where this guess could be wrong, pass ``device`` to run_key."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    if not _torch_has_cuda():
        return "cpu"
    return "cuda" if any(Path("/dev").glob("nvidia[0-9]*")) else "cpu"


def _torch_has_cuda() -> bool:
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return False
    match = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*(.+)$", text, re.MULTILINE)
    return bool(match) and match.group(1).strip() not in ("None", "''", '""')


_VERSIONS: dict[str, str] = {}
_VERSIONS_LOCK = threading.Lock()


def code_versions() -> dict[str, str]:
    """residual-lab's, torch's and numpy's versions, the machine type and a digest of the
    resnet_core sources (worked out once per process)."""
    with _VERSIONS_LOCK:
        if not _VERSIONS:
            _VERSIONS.update({"residual-lab": resnet_core.__version__, "torch": _installed("torch"),
                              "numpy": _installed("numpy"), "machine": platform.machine(),
                              "code": code_digest()})
        return dict(_VERSIONS)


def _installed(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def code_digest(package: Path | None = None) -> str:
    """sha256 over the relative paths and contents of every .py file of resnet_core."""
    root = package or Path(resnet_core.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def dataset_identity(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The data set's arguments with defaults filled in, every file it reads replaced by the
    sha256 of its content (None where the file does not exist: such a run fails to load, and a
    failed run is never put)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    values = dataset_args_with_defaults(DATASETS[name], args)
    if name == "csv":
        values["path"] = {"sha256": _file_digest(Path(values["path"])) if values["path"] else None}
    elif name == "cifar10":
        root = Path(os.path.expanduser(values["root"] or str(DATA_DIR / "cifar-10-batches-bin")))
        names = [f"data_batch_{i}.bin" for i in range(1, int(values["batches"]) + 1)] + ["test_batch.bin"]
        values["root"] = {"sha256": {n: _file_digest(root / n) for n in names}}
    elif name == "digits":
        values["file"] = {"sha256": _file_digest(DATA_DIR / data_files.DIGITS_FILE)}
    return values


_DIGESTS: dict[tuple, str] = {}
_DIGESTS_LOCK = threading.Lock()


def _file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes; remembered while its size, modification time and inode stay."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not path.is_file():
        return None
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _DIGESTS_LOCK:
        if stamp in _DIGESTS:
            return _DIGESTS[stamp]
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    with _DIGESTS_LOCK:
        _DIGESTS[stamp] = h.hexdigest()
    return _DIGESTS[stamp]
