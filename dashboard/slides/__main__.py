"""``python -m dashboard.slides figures|clip RUN OUT``: the program behind ``python -m resnet_core
figures`` and ``clip`` (which check the arguments first). A bad run folder or file is one line on
stderr and exit status 2."""
from __future__ import annotations

import sys
from pathlib import Path

from resnet_core.errors import UserError, one_line
from resnet_core.records import RunRecord


def main(argv: list[str]) -> int:
    command, run, out = argv
    try:
        record = RunRecord.read(run)
        if command == "figures":
            from dashboard.slides.figures import save_all

            written = save_all(record, out)
            print(f"wrote {len(written)} files in {out}/")
            return 0
        from dashboard.slides.clip import write_clip

        path = write_clip(record, Path(out))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    except UserError as exc:
        print(one_line(f"error: {exc}"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
