"""The server as ``scripts/app.sh`` starts it: ``python -m dashboard.serve [streamlit options]`` is
``streamlit run dashboard/app.py [options]``, with the first worker process started with the
server instead of with the first page view.

Streamlit runs the app script only when a browser first opens the page. A worker started then
imports torch while the server draws that page and the browser renders it, on the same two cores,
and the day's first Train could wait for it (bench/cold_start.py: 1.0-1.6 s from the click in two
runs of five). Started here it has a second or two more, and is warm before anyone can click.
``app.py`` imports ``dashboard.prestart`` as well (the same module in the same process: one spare),
so a plain ``streamlit run dashboard/app.py`` works too, with the later start.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    import dashboard.prestart  # noqa: F401 - importing it starts the spare worker process
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), *sys.argv[1:]]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
