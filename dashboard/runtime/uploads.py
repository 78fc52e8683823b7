"""A points CSV a student uploads: checked once per content, kept in the server's scratch folder.

The page reruns on every click, and the uploader hands it the file each time: checking 9 MB of CSV
again took 0.33-0.42 s of the server's CPU per click. ``store_points_csv`` hashes the bytes and
checks (parses) a content it has not seen, once; what it found (the file's place, or the error) is
kept by hash for every session of this process. Nothing here calls Streamlit.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from resnet_core.data import DataError, points_csv_arrays

import dashboard.runtime.scratch as scratch

KEEP = 64  # contents remembered (a class uploading a few files each)

_checked: OrderedDict[str, str | None] = OrderedDict()  # hash -> the data's error, or None: it is fine
_lock = threading.Lock()


def store_points_csv(data: bytes) -> Path:
    """The checked file of ``data`` in the scratch folder (named by its content's hash: no user text
    in paths); DataError, the loader's own message, where it is not a points CSV."""
    digest = hashlib.sha256(data).hexdigest()[:20]
    with _lock:
        known = digest in _checked
        error = _checked.get(digest)
    if not known:
        try:
            points_csv_arrays(data)
            error = None
        except DataError as exc:
            error = str(exc)
        with _lock:
            _checked[digest] = error
            _checked.move_to_end(digest)
            while len(_checked) > KEEP:
                _checked.popitem(last=False)
    if error is not None:
        raise DataError(error)
    # This server's own private folder (scratch: made 0700, removed at exit), not a shared one.
    path = scratch.uploads() / f"{digest}.csv"
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path
