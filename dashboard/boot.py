"""Heavy imports once per server process, then ``gc.freeze()``.

Streamlit runs a full ``gc.collect()`` after every script and fragment run. With torch, pandas and
plotly loaded that walked hundreds of thousands of long-lived objects each time (about 120 ms of
GIL per refresh, measured); frozen, they are skipped. Importing this module is what does it, so
it happens once however often the app script reruns.
"""
import gc

import numpy  # noqa: F401
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import plotly.io  # noqa: F401
import plotly.subplots  # noqa: F401
import torch  # noqa: F401  (the server only talks to workers, but resnet_core imports it)

import resnet_core.parallel  # noqa: F401
import resnet_core.records  # noqa: F401

# The server only draws; torch work happens in the worker processes. Should anything here touch a
# tensor, it must not spread over both cores that the workers need.
torch.set_num_threads(1)

gc.collect()
gc.freeze()
