"""Property-based tests: whatever a user types, settings and the CLI answer with a clear message or a
valid run — never a traceback, never a value outside the documented ranges."""
import contextlib
import io
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from resnet_core.cli import main
from resnet_core.settings import CHOICES, RANGES, Settings, SettingsError

FIELDS = {**{k: st.sampled_from(v) | st.text(max_size=8) for k, v in CHOICES.items()},
          **{k: st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**7, 10**7) | st.text(max_size=6)
             for k in RANGES}}
MODEL_NAME = st.from_regex(r"(plain|resnet|vgg)-(-?\d{1,5})(-pre|-post|-x)?", fullmatch=True)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=FIELDS), st.lists(MODEL_NAME, max_size=4))
def test_settings_are_either_valid_or_refused_with_one_line(values, models):
    try:
        s = Settings.from_dict({**values, "models": models})
    except SettingsError as err:
        message = str(err)
        assert message and "\n" not in message and len(message) < 300
        return
    for name, (lo, hi) in RANGES.items():
        value = getattr(s, name)
        assert lo <= value <= hi and math.isfinite(value)
    for name, choices in CHOICES.items():
        assert getattr(s, name) in choices
    assert s.models and all(spec.depth in s.valid_depths() for spec in s.model_specs)
    assert Settings.from_dict(s.to_dict()) == s  # what is stored (URL, config.json) restores exactly


FLAG_VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
FLAGS = st.sampled_from(["--models", "--width", "--lr", "--batch-size", "--steps", "--block", "--shortcut",
                         "--dataset", "--dataset-arg", "--preset", "--momentum", "--seed", "--nonsense"])


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(FLAGS, FLAG_VALUES), min_size=1, max_size=4))
def test_the_cli_never_shows_a_traceback(pairs):
    """Random flags: either a one-line exit 2 before anything runs, or valid settings, which we stop
    by pointing --out at a folder that already holds a run (checked right after the settings)."""
    with tempfile.TemporaryDirectory() as out:
        (Path(out) / "metrics.csv").write_text("")
        argv = ["train", "--out", out] + [x for pair in pairs for x in pair]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
    text = err.getvalue()
    assert code == 2
    assert text.count("\n") == 1 and "Traceback" not in text
