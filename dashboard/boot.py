"""Heavy imports once per server process, then ``gc.freeze()``.

Streamlit runs a full ``gc.collect()`` after every script and fragment run. With pandas and plotly
loaded that walked hundreds of thousands of long-lived objects each time (about 120 ms of GIL per
refresh, measured with torch also loaded); frozen, they are skipped. Importing this module is what
does it, so it happens once however often the app script reruns.

torch is not among them: the server only draws, and the training and analysis processes import
it themselves. Keeping it out of the server saves about a second of every start-up here
(tests/test_app.py checks that the app's modules do not pull it in).
"""
import gc

import numpy  # noqa: F401
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import plotly.io  # noqa: F401
import plotly.subplots  # noqa: F401

import resnet_core.remote.worker_process  # noqa: F401
import resnet_core.records  # noqa: F401

gc.collect()
gc.freeze()
