"""The catalogue of bad inputs: every one a user can give, where it comes in, and the message it gets.

`docs/bad-inputs.md` is generated from it (``.venv/bin/python tests/bad_inputs.py``) and
`tests/test_bad_inputs.py` asserts that every row of that table is what the code says today.
Each case is a function returning the one-line message the user sees.
"""
from __future__ import annotations

from typing import Callable

from bad_input_sources import (BUDGET, CONFIG, GOOD, LAYERS, METRICS, ROOT, RUN_FILES, broken_run, cache_entry, cifar, cli,
                               csv_upload, export_command, fifo, fourth_tab, link, replay_folder, server_full, sidebar,
                               slowed_link, sweep_panel, symlink)

Case = tuple[str, str, Callable[[], str]]  # (where, what the user gave, how to get the message)


# Two models' maps: plain-4's lacks one of its 2 x 2 grid points.
REGIONS = ("step,model,x,y,predicted,confidence\n"
           + "".join(f"0,{m},{x},{y},0,0.9\n" for m in ("plain-4", "resnet-6") for x in (0, 1) for y in (0, 1)
                     if (m, x, y) != ("plain-4", 1, 1)))
PATHS = "step,model,length,n_paths,grad_norm,share,residual\n"
UNEVEN = LAYERS + "5,plain-4,0,stem,1.0,1.0,\n5,plain-4,1,block1.1,1.0,1.0,\n"
GOOD_ROWS = "".join(f"{i % 7 / 7},{i % 5 / 5},{i % 2}\n" for i in range(20))

CASES: list[Case] = [
    ("CLI", "`--models plain-7` (odd depth)", cli("--models", "plain-7")),
    ("CLI", "`--models plain-0` (zero depth)", cli("--models", "plain-0")),
    ("CLI", "`--models plain--8` (negative depth)", cli("--models", "plain--8")),
    ("CLI", "`--models resnet-100000` (huge depth)", cli("--models", "resnet-100000")),
    ("CLI", "`--width 0`", cli("--width", "0")),
    ("CLI", "`--width 100000`", cli("--width", "100000")),
    ("CLI", "`--width 512 --models resnet-1002` (too big to hold)", cli("--width", "512", "--models", "resnet-1002")),
    ("CLI", "`--lr 0`", cli("--lr", "0")),
    ("CLI", "`--lr -0.1`", cli("--lr", "-0.1")),
    ("CLI", "`--lr nan`", cli("--lr", "nan")),
    ("CLI", "`--lr 1e9`", cli("--lr", "1e9")),
    ("CLI", "`--batch-size 0`", cli("--batch-size", "0")),
    ("CLI", "`--batch-size 4000` (more than the data)", cli("--batch-size", "4000")),
    ("CLI", "`--preset nope`", cli("--preset", "nope")),
    ("CLI", "`--init fixup` with BatchNorm on", cli("--init", "fixup", "--models", "resnet-20")),
    ("CLI", "`--models plain-20-skipinit,resnet-20`", cli("--models", "plain-20-skipinit,resnet-20")),
    ("CLI", "`--init skipinit` with only plain nets", cli("--init", "skipinit", "--models", "plain-20")),
    ("CLI", "`--branch-scale invsqrt` with only plain nets", cli("--branch-scale", "invsqrt", "--models", "plain-20")),
    ("CLI", "`--branch-scale 2`", cli("--branch-scale", "2")),
    ("CLI", "`--dataset mnist`", cli("--dataset", "mnist")),
    ("CLI", "`--block banana`", cli("--block", "banana")),
    ("CLI", "`--dataset-arg arms=lots`", cli("--dataset-arg", "arms=lots")),
    ("CLI", "`--dataset-arg colour=red`", cli("--dataset-arg", "colour=red")),
    ("CLI", "`--bogus` (unknown flag)", cli("--bogus")),
    ("CLI", "`--dataset csv` without a file", cli("--dataset", "csv")),
    ("CLI", "`--models resnet-74 --width 512 --stages 4` (the old estimate said 19M weights)",
     cli("--models", "resnet-74", "--width", "512", "--stages", "4")),
    ("CLI", "`--models plain-2002 --width 96 --batch-size 4096` (about 17 GB of activations)",
     cli("--models", "plain-2002", "--width", "96", "--batch-size", "4096", "--dataset-arg", "n=8000", env=BUDGET)),
    ("CLI", "`--workers 99`", cli("--workers", "99")),
    ("CLI", "`--out` a folder holding the user's own `config.json` and `layers.csv`",
     cli(files={"config.json": '{"mine": true}', "layers.csv": "my,own\n"})),
    ("CLI", "the same with `--overwrite`", cli("--overwrite", files={"config.json": '{"mine": true}', "layers.csv": "my,own\n"})),
    ("CLI", "`--out` a folder holding a run and a file of the user's", cli("--overwrite", files={**RUN_FILES, "notes.txt": "mine"})),
    ("CLI", "`--out` a folder holding a run, without `--overwrite`", cli(files=RUN_FILES)),
    ("CLI", "`lesson degradation --out` a folder of the user's", cli(command=("lesson", "degradation"), files={"notes.txt": "mine"})),
    ("CLI", "`sweep --out` a folder holding other files", cli(command=("sweep",), files={"notes.txt": "mine"})),
    ("CLI", "`sweep --workers 99`", cli("--workers", "99", command=("sweep",))),
    ("CSV", "no `label` column", csv_upload("x1,x2\n" + "1,2\n" * 20)),
    ("CSV", "text in a numeric column", csv_upload("x1,x2,label\n" + GOOD_ROWS + "abc,1,0\n")),
    ("CSV", "NaN in a numeric column", csv_upload("x1,x2,label\n" + GOOD_ROWS + "nan,1,0\n")),
    ("CSV", "an empty cell", csv_upload("x1,x2,label\n" + GOOD_ROWS + ",1,0\n")),
    ("CSV", "one class only", csv_upload("x1,x2,label\n" + "".join(f"{i},{i},0\n" for i in range(20)))),
    ("CSV", "an empty file", csv_upload("")),
    ("CSV", "a binary file", csv_upload(bytes(range(256)) * 4)),
    ("CSV", "over 10 MB", csv_upload(b"x1,x2,label\n" + b"0.123456789,0.123456789,1\n" * 420_000)),
    ("CSV", "a million rows (under 10 MB)", csv_upload(b"x1,x2,label\n" + b"1,2,0\n" * 1_000_000)),
    ("CSV", "three rows", csv_upload("x1,x2,label\n1,2,0\n2,3,1\n3,4,0\n")),
    ("CSV", "values near ±1e308", csv_upload("x1,x2,label\n" + GOOD_ROWS + "1e308,-1e308,1\n")),
    ("CSV", "a cell holding markup", csv_upload("x1,x2,label\n" + GOOD_ROWS + "[Click here](https://evil.example),1,0\n")),
    ("link", "`?models=plain-7`", link("models=plain-7")),
    ("link", "`?lr=-1`", link("lr=-1")),
    ("link", "`?branch_scale=2`", link("branch_scale=2")),
    ("link", "`?init=fixup` (with BatchNorm on)", link("init=fixup")),
    ("link", "`?lr=nan`", link("lr=nan")),
    ("link", "`?width=100000`", link("width=100000")),
    ("link", "`?batch_size=0`", link("batch_size=0")),
    ("link", "`?steps=1e12`", link("steps=1e12")),
    ("link", "`?block=banana`", link("block=banana")),
    ("link", "`?preset=nope`", link("preset=nope")),
    ("link", "`?dataset=mnist`", link("dataset=mnist")),
    ("link", "`?dataset=csv&data.path=/etc/passwd` (a file path in a link)", link("dataset=csv&data.path=/etc/passwd")),
    ("link", "`?preset=[Your session expired](https://evil.example/login)`",
     link("preset=%5BYour+session+expired%5D%28https%3A%2F%2Fevil.example%2Flogin%29")),
    ("link", "`?models=` of 538 kB", link("models=" + "resnet-56," * 53_800)),
    ("link", "a link of 500 parameters", link("&".join(f"p{i}=1" for i in range(500)))),
    ("app", "`?width=512&stages=4&models=resnet-74&optimizer=adam&batch_size=4096&ds_n=200000`",
     sidebar("width=512&stages=4&models=resnet-74&optimizer=adam&batch_size=4096&ds_n=200000")),
    ("app", "`?models=plain-2002&width=96&batch_size=4096&ds_n=200000`",
     sidebar("models=plain-2002&width=96&batch_size=4096&ds_n=200000")),
    ("app", "`?batch_size=4096` (more than the data)", sidebar("batch_size=4096")),
    ("app", "Depth sweep at width 512 up to depth 110", sweep_panel((20, 56, 110), width=512)),
    ("app", "Train while the class's training runs fill the server's memory (each run within its own budget)",
     server_full()),
    ("app", "Train in a fourth tab of one computer while its three other tabs train", fourth_tab()),
    ("app", "`?models=resnet-2002,resnet-2002-pre,resnet-2002-bn,resnet-2002-post,resnet-2002-pre-bn,"
     "resnet-2002-post-bn&width=32&eval_every=1&probe_every=1&paths_every=1&steps=100000` (it trains, slowed)",
     slowed_link()),
    ("replay", "a folder outside the runs directory (`../elsewhere`)", replay_folder("../elsewhere")),
    ("replay", "an entry of the class's run cache (`cache/<key>`)", cache_entry()),
    ("replay", "an absolute path (`/etc`)", replay_folder("/etc")),
    ("replay", "a run folder without `metrics.csv`", broken_run({"layers.csv": LAYERS})),
    ("replay", "a `metrics.csv` without its `test_error` column",
     broken_run({"metrics.csv": METRICS.replace(",test_error", ""), "layers.csv": LAYERS})),
    ("replay", "a `paths.csv` whose rows do not match its header",
     broken_run({**GOOD, "paths.csv": "step,model\n0,plain-4\n1,plain-4,2,3\n"})),
    ("replay", "a `regions.csv` whose map misses a grid point", broken_run({**GOOD, "regions.csv": REGIONS})),
    ("replay", "text in a number column of `metrics.csv`",
     broken_run({**GOOD, "metrics.csv": METRICS + "10,plain-4,abc,0.5,0.5,1.0,ok\n"})),
    ("replay", "an error above 1 in `metrics.csv`", broken_run({**GOOD, "metrics.csv": METRICS.replace("0.5,0.5", "2.5,0.5")})),
    ("replay", "a step of 1.5", broken_run({**GOOD, "metrics.csv": METRICS + "1.5,plain-4,1.0,0.5,0.5,0.0,ok\n"})),
    ("replay", "a negative step", broken_run({**GOOD, "layers.csv": LAYERS.replace("\n0,", "\n-1,")})),
    ("replay", "a status that is neither ok nor diverged", broken_run({**GOOD, "metrics.csv": METRICS.replace(",ok", ",maybe")})),
    ("replay", "a model named with markup in `metrics.csv`",
     broken_run({**GOOD, "metrics.csv": METRICS.replace("0,plain-4", "0,[x](https://evil.example)")})),
    ("replay", "a model without a name in `config.json`",
     broken_run({**GOOD, "config.json": '{"settings": {}, "models": [{"depth": 4}]}'})),
    ("replay", "`config.json` nested 100,000 deep", broken_run({**GOOD, "config.json": "[" * 100_000 + "]" * 100_000})),
    ("replay", "`config.json` that is not an object", broken_run({**GOOD, "config.json": "[1, 2, 3]"})),
    ("replay", "`config.json` that is not JSON", broken_run({**GOOD, "config.json": "{settings: nope"})),
    ("replay", "`config.json` of 2 MB", broken_run({**GOOD, "config.json": '{"pad": "' + "x" * 2_000_000 + '"}'})),
    ("replay", "uneven layer counts (2 layers at step 5, 1 at step 0)", broken_run({**GOOD, "layers.csv": UNEVEN})),
    ("replay", "layers numbered 0, 2 (one missing)",
     broken_run({**GOOD, "layers.csv": LAYERS + "1,plain-4,0,stem,1,1,\n1,plain-4,2,head,1,1,\n"})),
    ("replay", "text in a number column of `paths.csv`", broken_run({**GOOD, "paths.csv": PATHS + "0,plain-4,0,1,lots,1,0\n"})),
    ("replay", "text in the `block` column of `lesion.csv`",
     broken_run({**GOOD, "lesion.csv": "model,block,train_error\nplain-4,first,0.5\n"})),
    ("replay", "an infinite grid point in `regions.csv`",
     broken_run({**GOOD, "regions.csv": "step,model,x,y,predicted,confidence\n0,plain-4,inf,0,0,0.9\n"})),
    ("replay", "an empty `metrics.csv`", broken_run({**GOOD, "metrics.csv": ""})),
    ("replay", "a `metrics.csv` that is not UTF-8", broken_run({**GOOD, "metrics.csv": METRICS.encode() + b"0,plain-4,\xff,0,0,0,ok\n"})),
    ("replay", "`layers.csv` a link to `/dev/zero`", broken_run({**GOOD, "layers.csv": symlink("/dev/zero")})),
    ("replay", "`layers.csv` a link to a file outside the run", broken_run({**GOOD, "layers.csv": symlink("/etc/hostname")})),
    ("replay", "`metrics.csv` a named pipe (FIFO)", broken_run({**GOOD, "metrics.csv": fifo})),
    ("replay", "a `layers.csv` over the replay size limit (`RESIDUAL_LAB_REPLAY_MB=1`)",
     broken_run({**GOOD, "layers.csv": LAYERS + "0,plain-4,1,x,1,1,\n" * 80_000}, env={"RESIDUAL_LAB_REPLAY_MB": "1"})),
    ("replay", "a run folder that is a link to a folder outside the runs directory", broken_run(GOOD, link=True)),
    ("CLI", "`notebook nowhere` (not a run folder)", export_command("notebook", "nowhere")),
    ("CLI", "`notebook run --out notes.txt`", export_command("notebook", "run", "--out", "notes.txt")),
    ("CLI", "`clip nowhere --out run.gif` (not a run folder)", export_command("clip", "nowhere", "--out", "run.gif")),
    ("CLI", "`clip run --out run.avi`", export_command("clip", "run", "--out", "run.avi")),
    ("CLI", "`figures run --out figs` without Chromium (`BROWSER_PATH=/nowhere/chromium`)",
     export_command("figures", "run", "--out", "figs", run={"config.json": CONFIG, **GOOD},
                    env={"BROWSER_PATH": "/nowhere/chromium"})),
    ("CIFAR-10", "a truncated `data_batch_1.bin`", cifar(3, extra_bytes=100)),
    ("CIFAR-10", "a label byte above 9", cifar(3, label=12)),
]


def table() -> str:
    lines = ["| where | the user gives | the message |", "| --- | --- | --- |"]
    for where, what, get in CASES:
        lines.append(f"| {where} | {what} | {get().replace('|', '¦')} |")
    return "\n".join(lines)


HEADER = """# Bad input, and what Residual Lab answers

Every input below was tried; each message is what the user sees, one line, no traceback, and
nothing is lost (the CLI writes nothing, and a folder given as `--out` is left exactly as it was;
the app keeps its settings and its run; a link's bad values are clamped or replaced and listed in a
warning at the top of the page, each quoted as code so that none renders as a link; the sidebar's
own widgets only offer valid values, and what they cannot rule out, a run too big for the machine
included, is refused by the same checks as the CLI's, shown with `st.error`; a replayed folder
that is not what a run writes is refused with the file and the line). Sizes are those of a 6 GB
run budget (`RESIDUAL_LAB_RUN_MEMORY_MB=6144`, the default on a 24 GB, 2-core machine). The table is
generated by `tests/bad_inputs.py` and `tests/test_bad_inputs.py` asserts every row.

"""

if __name__ == "__main__":
    out = ROOT / "docs" / "bad-inputs.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(HEADER + table() + "\n")
    print(f"wrote {out}")
