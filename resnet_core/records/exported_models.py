"""A run folder's ``models/``: the trained nets as ``NAME.safetensors`` (written by the trainer,
``nets/export.py``), ``data.npz`` beside them, and ``model.py``, made here: the standalone
definition (``nets/standalone.py``, read as text, never imported: this module is torch-free)
followed by every saved net's architecture, read from its file's header.

So the command line (whose process may never load torch) and the page's Records tab write the same
``model.py``, and it describes exactly the nets in the folder.
"""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

from resnet_core.records.tables import RecordError

MODELS_DIR = "models"
STANDALONE = Path(__file__).resolve().parents[1] / "nets" / "standalone.py"
METADATA_KEY = "residual_lab.architecture"  # where nets/export.py puts the architecture
PLACEHOLDER = "ARCHITECTURES: dict[str, dict] = {}\n"
MAX_HEADER = 1 << 24  # a safetensors header is JSON; more than 16 MB is not one of ours


def architecture(path: Path) -> dict:
    """The architecture stored in a ``.safetensors`` file's header: 8 bytes of length, then JSON."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > MAX_HEADER:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
        return json.loads(header["__metadata__"][METADATA_KEY])
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise RecordError(f"{path.name} is not a net saved by Residual Lab ({exc})") from None


def model_source(folder: str | os.PathLike) -> str:
    """``model.py`` for the nets saved in ``folder``: the standalone definition and their architectures."""
    saved = sorted(Path(folder).glob("*.safetensors"))
    architectures = {p.stem: architecture(p) for p in saved}
    template = STANDALONE.read_text(encoding="utf-8")
    return template.replace(PLACEHOLDER, f"ARCHITECTURES: dict[str, dict] = {listing(architectures)}\n")


def listing(architectures: dict[str, dict]) -> str:
    """The architectures as a Python literal to read: a net's fields one a line, a block's weighted
    layers one a line under it."""
    lines = ["{"]
    for name, arch in architectures.items():
        lines.append(f"    {name!r}: {{")
        for key, value in arch.items():
            if key != "blocks":
                lines.append(f"        {key!r}: {value!r},")
                continue
            lines.append("        'blocks': [")
            for block in value:
                head = {k: v for k, v in block.items() if k != "units"}
                lines.append(f"            {{{repr(head)[1:-1]}, 'units': [")
                lines += [f"                {unit!r}," for unit in block["units"]]
                lines.append("            ]},")
            lines.append("        ],")
        lines.append("    },")
    return "\n".join(lines + ["}"])


def write_model_py(folder: str | os.PathLike) -> Path:
    path = Path(folder) / "model.py"
    path.write_text(model_source(folder), encoding="utf-8")
    return path


def models_zip(run_folder: str | os.PathLike) -> bytes | None:
    """The run folder's ``models/`` as one zip (``models/model.py``, the weights, ``data.npz``);
    None where the run saved no nets."""
    folder = Path(run_folder) / MODELS_DIR
    saved = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not saved:
        return None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{MODELS_DIR}/model.py", model_source(folder))
        for path in [*saved, folder / "data.npz"]:
            if path.is_file() and not path.is_symlink():
                z.write(path, f"{MODELS_DIR}/{path.name}")
    return buffer.getvalue()
