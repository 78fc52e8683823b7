"""The exports as a teacher takes them, from the page: Chromium against a real server trains a tiny
run, opens Records and downloads the notebook, the trained nets, the figures and a clip; each
download is checked for what it must hold."""
from __future__ import annotations

import io
import urllib.parse
import zipfile

import imageio.v3 as iio
import pytest

import dashboard.sidebar.url_state as url_state
from dashboard.sidebar.url_state import UrlState
from resnet_core.settings import Settings
from streamlit_server import STEP, step_of
from test_browser import open_tab, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

TINY = Settings(models=("plain-4", "resnet-6"), width=8, steps=12, eval_every=3, probe_every=3,
                paths_every=0, dataset_args={"n": 200})
WAIT_MS = 120_000


def tiny_url(server) -> str:
    return f"{server.url}/?{urllib.parse.urlencode(url_state.encode(UrlState(TINY)))}"


def download(page, label: str) -> bytes:
    button = page.get_by_test_id("stDownloadButton").filter(has_text=label)
    button.wait_for(timeout=WAIT_MS)
    with page.expect_download(timeout=WAIT_MS) as info:
        button.get_by_role("button").click()
    with open(info.value.path(), "rb") as f:
        return f.read()


def names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return sorted(z.namelist())


def test_every_export_downloads_from_the_records_tab(streamlit_server, page):
    page.goto(tiny_url(streamlit_server))
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Train", exact=True).click()
    wait_until(page, lambda p: step_of(p) == 12)
    open_tab(page, "Records")

    assert "residual-lab-run.ipynb" in names(download(page, "notebook.zip"))

    page.get_by_role("button", name="Save the trained nets").click()
    assert names(download(page, "models.zip")) == ["models/data.npz", "models/model.py", "models/plain-4.safetensors",
                                                   "models/resnet-6.safetensors"]

    page.get_by_role("button", name="Make the figures").click()
    figures = names(download(page, "figures.zip"))
    assert "training-error.png" in figures and "training-error.svg" in figures

    page.get_by_role("button", name="Make a clip").click()
    clip = download(page, "clip.gif")
    frames = iio.imread(clip, index=None, extension=".gif")
    assert len(frames) == 5  # steps 0, 3, 6, 9, 12
