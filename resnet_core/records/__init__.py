"""What a run records, in memory while it trains and as tidy files in its folder.

Metrics are rows; per-layer measurements are kept as one numpy vector per (model, step) so
that a 1000-layer net over 1000 steps stays compact, and are turned into tidy rows only when
written or asked for as a table. Every method is safe to call from another thread.

Memory stays bounded however long a run goes: the record keeps a fixed budget of history per
model (``METRIC_HISTORY`` evaluations, ``LAYER_VALUES`` per-layer values over all models, a row
budget for the path analyses), thinning old steps evenly as new ones come (the first and the
latest two are always kept), which is all a page draws. The full tables go to the run folder as
the run goes (``stream_to``): a run that dies has written what it trained, and downloads are
built from those files.

``RunRecord.read`` reads a run folder back, checking every column's type and every file it opens
(a regular file inside the folder, no link, no device, within a size limit when asked), so a
folder that is not what a run writes is a ``RecordError`` with one line, never a traceback.
"""
from resnet_core.records.record import (LAYER_SNAPSHOTS, LAYER_VALUES, METRIC_HISTORY, PATH_ANALYSES, PATH_ROWS,
                                        REGION_HISTORY, History, RunRecord)
from resnet_core.records.tables import (LAYER_COLUMNS, LESION_COLUMNS, METRIC_COLUMNS, PATH_COLUMNS, PATH_OPTIONAL,
                                        REGION_COLUMNS, RUN_FILES, STEP_TABLES, LayerSnapshot, RecordError, run_finished)

__all__ = ["RunRecord", "RecordError", "LayerSnapshot", "History", "run_finished", "METRIC_COLUMNS", "LAYER_COLUMNS",
           "PATH_COLUMNS", "PATH_OPTIONAL", "LESION_COLUMNS", "REGION_COLUMNS", "RUN_FILES", "STEP_TABLES", "METRIC_HISTORY",
           "LAYER_VALUES", "LAYER_SNAPSHOTS", "PATH_ROWS", "PATH_ANALYSES", "REGION_HISTORY"]
