"""An analysis worker process: ``python -m resnet_core.analysis.worker``, running the jobs that
``resnet_core.remote.jobs.JobPool`` sends it (a sweep's runs, a loss landscape, shattered gradients)."""
from __future__ import annotations

import torch

from resnet_core.remote.jobs import run_job
from resnet_core.remote.transport import exit_now, serve

if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny layers are dispatch-bound, and the workers share the cores
    serve(run_job)
    exit_now()
