"""Every row of docs/bad-inputs.md is what the code answers today: one line, no traceback."""
import pytest

from bad_inputs import CASES, HEADER, ROOT

DOC = (ROOT / "docs" / "bad-inputs.md").read_text()


@pytest.mark.parametrize("where,what,get", CASES, ids=[f"{w}: {x}" for w, x, _ in CASES])
def test_bad_input_gets_the_documented_message(where, what, get):
    message = get()
    assert message and "\n" not in message and "Traceback" not in message
    assert f"| {where} | {what} | {message.replace('|', '¦')} |" in DOC, "docs/bad-inputs.md is stale: regenerate it"


def test_the_document_lists_nothing_untested():
    rows = [line for line in DOC[len(HEADER):].splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) - 1 == len(CASES)  # minus the header row
