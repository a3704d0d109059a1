"""Study keys are validated when the study config is built, and every error names the key the user typed.

No training here: each case builds a config (milliseconds)."""

import dataclasses
import pickle
import typing

import pytest
from typer.testing import CliRunner

from mesalab.config import POSITIVE, POSITIVE_INT, ConfigError, config, inner_keys, integer, require, tuple_of
from mesalab.studies import STUDIES, get_study
from mesalab.studies.runner import study_config


def numeric_keys() -> list[tuple[str, str]]:
    """(study, key) for every int, float or tuple-of-numbers key of every study."""
    out = []
    for name in STUDIES:
        cls = get_study(name).Config
        for key, tp in typing.get_type_hints(cls).items():
            if tp in (int, float) or (typing.get_origin(tp) is tuple and typing.get_args(tp)[0] in (int, float)):
                out.append((name, key))
    return out


NUMERIC = numeric_keys()


@pytest.mark.parametrize("study,key", NUMERIC, ids=[f"{s}:{k}" for s, k in NUMERIC])
def test_a_negative_value_is_refused_naming_the_study_key(study, key):
    with pytest.raises(ConfigError) as err:
        study_config(study, "smoke", [f"{key}=-7"])
    assert str(err.value).startswith(f"Config.{key} = "), str(err.value)
    assert "is not allowed; expected" in str(err.value)


@pytest.mark.parametrize("study,key", NUMERIC, ids=[f"{s}:{k}" for s, k in NUMERIC])
def test_a_zero_is_refused_naming_the_key_or_builds_what_the_study_trains(study, key):
    """0 is allowed where it means something (no clipping, skip a part, no warm-up); then the study's training
    set-up must build, not fail later inside training."""
    try:
        cfg = study_config(study, "smoke", [f"{key}=0"])
    except ConfigError as e:
        assert str(e).startswith(f"Config.{key} = "), str(e)
        return
    mod = get_study(study)
    if hasattr(mod, "experiment"):
        mod.experiment(cfg)


# Found by trying every key with a negative or zero value: accepted before (training started, or failed later
# naming an inner field such as TransformerConfig.clip or ClassificationConfig.n_classes).
REFUSED = [
    ("gd-equivalence", "b2=-7", "a number in [0, 1)"),
    ("mesa-dynamics", "act_clip=-7", "a number >= 0 (0: no clipping)"),
    ("mesa-dynamics", "grad_clip=-7", "a number >= 0 (0: no clipping)"),
    ("mesa-dynamics", "noise=-7", "a number >= 0"),
    ("mesa-dynamics", "warmup_steps=-7", "an integer >= 0"),
    ("mesa-dynamics", "compare_warmup_steps=-7", "an integer >= 0"),
    ("mesa-dynamics", "end_lr=-7", "a number >= 0"),
    ("mesa-dynamics", "weight_decay=-7", "a number >= 0"),
    ("mesa-dynamics", "eval_batch_size=0", "an integer >= 1"),
    ("mesa-reverse-engineering", "warmup_steps=-7", "an integer >= 0"),
    ("mesa-reverse-engineering", "fewshot_prefix=-7", "an integer >= 1"),
    ("mesa-reverse-engineering", "fewshot_prefix=0", "an integer >= 1"),
    ("mesa-reverse-engineering", "neumann_depths=-7", "a non-empty tuple of depths >= 1"),
    ("mesa-reverse-engineering", "neumann_depths=0", "a non-empty tuple of depths >= 1"),
    ("mesa-reverse-engineering", "neumann_depths=()", "a non-empty tuple of depths >= 1"),
    ("mesa-reverse-engineering", "neumann_positions=()", "a non-empty tuple of prefix lengths >= 2"),
    ("mesa-reverse-engineering", "init_std=0", "a number > 0"),
    ("mesa-reverse-engineering", "act_clip=-7", "a number >= 0"),
    ("mesa-reverse-engineering", "chunk_steps=0", "an integer >= 1"),
    ("mesa-reverse-engineering", "noise=-7", "a number >= 0"),
    ("induction-classification", "weight_decay=-7", "a number >= 0"),
    ("induction-classification", "phase_classes=0", "an integer >= 1"),
    ("induction-classification", "burst_classes=-7", "an integer >= 1"),
    ("induction-classification", "n_classes=-7", "an integer >= 1"),
    ("induction-heads", "n_items=0", "an integer >= 1"),
    ("induction-heads", "n_pairs=-7", "an integer >= 1"),
    # Rules that involve several keys, checked on the tasks the study builds, named in the study's keys.
    ("induction-classification", "burst_classes=20", "a multiple of n_labels (16)"),
    ("induction-classification", "phase_classes=8", "an integer >= n_labels (16)"),
    ("induction-classification", "burst_values=0,3", "0 or a divisor of n_pairs (4) (the burstiness sweep's task"),
    ("induction-classification", "phase_burstiness=3", "0 or a divisor of n_pairs (4)"),
    ("induction-heads", "n_pairs=20", "an integer in [1, n_items] = [1, 16]"),
]


@pytest.mark.parametrize("study,assignment,allowed", REFUSED, ids=[f"{s}:{a}" for s, a, _ in REFUSED])
def test_found_cases_are_refused_with_the_study_key(study, assignment, allowed):
    key = assignment.split("=")[0]
    with pytest.raises(ConfigError) as err:
        study_config(study, "smoke", [assignment])
    message = str(err.value)
    assert message.startswith(f"Config.{key} = ") and "is not allowed; expected " in message, message
    assert allowed in message, message
    for inner in ("TransformerConfig", "TrainConfig", "ClassificationConfig", "CopyingConfig", "DynamicsConfig"):
        assert inner not in message, message


def test_the_control_task_is_checked_too():
    """L = N needs K to be a multiple of N: found when the config is built, not when the control starts training."""
    with pytest.raises(ConfigError, match=r"^Config.n_classes = 64 is not allowed; expected a multiple of n_labels "
                       r"\(3\).*\(the L = N control's task, whose n_labels is n_pairs\)"):
        study_config("induction-classification", "smoke", ["n_pairs=3"])
    study_config("induction-classification", "smoke", ["n_pairs=3", "control=false", "burst_values=0",
                                                        "phase_burstiness=0"])


def test_every_choice_key_has_a_rule():
    """Numeric keys are held to a negative value above; a key that picks among names (an optimizer, a method) gets a
    rule in Config.RULES too, or is listed here with the __post_init__ check that covers it."""
    checked_by_hand = {("mesa-dynamics", "models")}  # each name parsed by mesa_dynamics.models.parse
    for name in STUDIES:
        cls = get_study(name).Config
        for key, tp in typing.get_type_hints(cls).items():
            if (tp is str or typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is str) \
                    and (name, key) not in checked_by_hand:
                assert key in getattr(cls, "RULES", {}), f"{name}: key {key!r} has no rule in Config.RULES"


def test_cli_names_the_study_key_and_trains_nothing(tmp_path):
    from mesalab.cli import app

    runner = CliRunner(env={"COLUMNS": "300"})
    for study, assignment, expected in (("mesa-dynamics", "act_clip=-7", "Config.act_clip = -7.0 is not allowed"),
                                        ("induction-classification", "burst_classes=-7",
                                         "Config.burst_classes = -7 is not allowed")):
        out = tmp_path / study
        res = runner.invoke(app, ["run", study, "--scale", "smoke", "--set", assignment, "--out", str(out),
                                  "--no-progress"])
        assert res.exit_code == 2, res.output
        assert expected in " ".join(res.output.split()), res.output
        assert not (out / "run.json").exists()  # refused before the run directory was written


def test_a_sweep_grid_value_is_checked_against_the_study_key():
    from mesalab.sweep import parse_grid, plan

    cls = get_study("induction-classification").Config
    base = study_config("induction-classification", "smoke")
    with pytest.raises(ConfigError, match=r"^Config.n_classes = 20 is not allowed; expected a multiple of n_labels"):
        plan("induction-classification", base, parse_grid(cls, ["n_classes=64,20"]))


# --- the mechanism, on a toy config ----------------------------------------------------------------------------


@config
class Inner:
    width: int = 4
    depth: int = 1

    def __post_init__(self) -> None:
        require(self, "width", self.width % 2 == 0, "an even number")
        require(self, "depth", self.depth >= 0, "an integer >= 0")


@config
class Outer:
    size: int = 4
    layers: tuple[int, ...] = (1, 2)
    rate: float = 0.1

    RULES = {"size": POSITIVE_INT, "layers": tuple_of(integer(1), "layer counts >= 1"), "rate": POSITIVE}

    def __post_init__(self) -> None:
        with inner_keys(self, {"width": "size"}, where="the toy model"):
            Inner(width=self.size)
        with inner_keys(self):  # depth comes from no single key here
            Inner(depth=-1 if self.rate > 1 else 1, width=2)


def test_rules_run_first_and_name_the_field():
    with pytest.raises(ConfigError, match=r"^Outer.size = 0 is not allowed; expected an integer >= 1$"):
        Outer(size=0)
    with pytest.raises(ConfigError, match=r"^Outer.layers = \(1, 0\) is not allowed; expected a tuple of layer counts"):
        Outer(layers=(1, 0))
    with pytest.raises(ConfigError, match=r"^Outer.rate = 'x' is not allowed"):
        Outer(rate="x")
    assert dataclasses.replace(Outer(), size=6).size == 6


def test_inner_errors_are_re_raised_with_the_outer_key():
    with pytest.raises(ConfigError) as err:
        Outer(size=3)
    assert str(err.value) == "Outer.size = 3 is not allowed; expected an even number (the toy model)"
    assert (err.value.owner, err.value.field, err.value.value) == ("Outer", "size", 3)
    # An inner field that no key names: said as such, with the inner message.
    with pytest.raises(ConfigError, match=r"^Outer: these keys build a Inner that is not allowed: Inner.depth = -1"):
        Outer(rate=2.0)


def test_unknown_rule_names_are_a_definition_error():
    with pytest.raises(TypeError, match="RULES names"):
        @config
        class Bad:
            a: int = 1
            RULES = {"b": POSITIVE}


def test_config_errors_survive_pickling():
    """A Ray task's ConfigError comes back pickled; its fields must survive."""
    with pytest.raises(ConfigError) as err:
        Outer(size=3)
    again = pickle.loads(pickle.dumps(err.value))
    assert str(again) == str(err.value) and again.field == "size" and again.allowed.startswith("an even number")
