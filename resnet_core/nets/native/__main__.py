"""``python -m resnet_core.nets.native``: build the native MLP walk for this machine's torch."""
import subprocess
import sys

from resnet_core.nets.native import build

try:
    print(f"native MLP walk: {build()}")
except (subprocess.CalledProcessError, OSError) as exc:
    detail = (getattr(exc, "stderr", "") or str(exc)).strip()
    print(f"the native MLP walk was not built ({detail.splitlines()[-1] if detail else exc}); "
          "training uses the Python walk, with the same numbers", file=sys.stderr)
