"""The one cache of finished runs: a whole run's record by its key (``run_keys.run_key``), the last
few in this server process's memory, in front of the run cache folder (``run_cache.RunCache``) that
every server process shares and that outlives them. ``ClassRuns`` asks it before training a key, and
hands it each run of a key as it finishes.

Memory alone when there is no folder (the cache turned off, or a limit that is not a number). Nothing
here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict

from resnet_core.records import STEP_TABLES, RecordError, RunRecord

from dashboard.runtime.record_at import full_record
from dashboard.runtime.run_cache import RunCache

KEEP_FINISHED = 16      # finished records kept in memory (the lesson of the day, a few variations)


def frozen_copy(record: RunRecord) -> RunRecord:
    """A copy of everything a run recorded as it trained, for the cache: every table and every
    decision map, without the lesion study (a user's request on the side, not part of the run)."""
    out = RunRecord(copy.deepcopy(record.config), {m: list(n) for m, n in record.layer_names.items()})
    out.add_metrics(record.metrics_frame().to_dict("records"))
    for model in record.layer_names:
        for snap in record.snapshots(model):
            out.add_layers(model, snap)
    paths = record.paths_frame()
    if len(paths):
        out.add_paths(paths.to_dict("records"))
    for table in STEP_TABLES:  # signal, jacobian, lens
        out.add_rows(table, record.table_frame(table).to_dict("records"))
    out.set_region_history(record.region_history())
    return out


def whole_run(record: RunRecord) -> RunRecord | None:
    """Every row of a finished live run (``full_record``: read back from the folder it streamed to,
    not the history kept in memory, so that a replay is the live run at every step); a frozen copy of
    the record where it streamed nowhere; None where its folder is gone or was cut at its size limit."""
    try:
        whole = full_record(record)
    except (OSError, ValueError, RecordError):
        return None
    return frozen_copy(record) if whole is record else whole


class FinishedRuns:
    """Finished runs by key; see the module's docstring. Safe to share between threads."""

    def __init__(self, folder: RunCache | None = None, keep: int = KEEP_FINISHED):
        self.folder, self.keep = folder, keep
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, RunRecord] = OrderedDict()

    def get(self, key: str) -> RunRecord | None:
        """The finished run of ``key``: from memory, else from the folder (kept in memory then)."""
        with self._lock:
            record = self._memory.get(key)
            if record is not None:
                self._memory.move_to_end(key)
                return record
        record = self.folder.get(key) if self.folder is not None else None
        if record is not None:
            self.remember(key, record)
        return record

    def remember(self, key: str, record: RunRecord) -> None:
        """Keep a whole run in memory (the least recently used leaves past ``keep``)."""
        with self._lock:
            self._memory[key] = record
            self._memory.move_to_end(key)
            while len(self._memory) > self.keep:
                self._memory.popitem(last=False)

    def store(self, key: str, record: RunRecord) -> None:
        """Write a whole run to the folder, for other server processes and later ones."""
        if self.folder is None:
            return
        try:
            self.folder.put(key, record)
        except (OSError, ValueError):
            pass  # a cache that cannot be written serves nobody, and costs nobody anything either
