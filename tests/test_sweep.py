"""Sweeps: grouping into ensembles, local vs Ray, and resuming a stopped sweep."""

import pandas as pd
import pytest

from mesalab.config import ConfigError
from mesalab.studies.gd_equivalence import Config
from mesalab.studies.runner import study_config
from mesalab.sweep import parse_grid, plan, run_sweep

SETS = ["steps=20", "chunk_steps=10", "batch_size=32", "eval_batch_size=64", "d=3", "n_context=4"]
# lr and x_half_width differ only in dynamic quantities, so the 2 × 2 grid is one compiled program; n_context is
# static (it changes shapes), so a grid over it needs one program per value.
GRID = ["lr=0.01,0.03", "x_half_width=0.5,1.0"]


def test_grid_points_that_share_a_program_form_one_ensemble():
    base = study_config("gd-equivalence", "smoke", SETS, seeds=2)
    assert len(plan("gd-equivalence", base, parse_grid(Config, GRID))) == 1
    units = plan("gd-equivalence", base, parse_grid(Config, ["lr=0.01,0.03", "n_context=4,6"]))
    assert len(units) == 2 and all(len(u.points) == 2 for u in units)


def test_grid_typos_and_impossible_values_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"has no field 'lrr'; did you mean 'lr'\? valid keys"):
        parse_grid(Config, ["lrr=1,2"])
    with pytest.raises(ConfigError, match="Config.steps = 'x' is not allowed; expected int"):
        parse_grid(Config, ["steps=10,x"])
    base = study_config("gd-equivalence", "smoke", SETS)
    with pytest.raises(ConfigError, match="Config.lr = -1.0 is not allowed"):
        plan("gd-equivalence", base, parse_grid(Config, ["lr=-1"]))
    with pytest.raises(ConfigError, match="train the same set-up"):
        plan("gd-equivalence", base, parse_grid(Config, ["iterations=3,5"]))  # a study-only key
    with pytest.raises(ConfigError, match="--grid seeds is not a grid axis"):
        plan("gd-equivalence", base, parse_grid(Config, ["seeds=1,2"]))


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    return run_sweep("gd-equivalence", "smoke", GRID, seeds=2, sets=SETS, out=out)


def test_sweep_table_has_every_point_and_seed(local_sweep):
    final = local_sweep[(local_sweep.step == 20) & (local_sweep.metric == "test_loss")]
    assert len(final) == 8  # 2 × 2 points × 2 seeds
    assert set(final.lr) == {0.01, 0.03} and set(final.x_half_width) == {0.5, 1.0}
    # x ~ U(±1) has 4× the loss scale of U(±0.5): the per-member task knob really reached the data.
    by_range = final.groupby("x_half_width").value.mean()
    assert by_range[1.0] > 2 * by_range[0.5]


def test_sweep_on_local_ray_gives_the_same_numbers(local_sweep, tmp_path):
    pytest.importorskip("ray")
    on_ray = run_sweep("gd-equivalence", "smoke", GRID, seeds=2, sets=SETS, out=tmp_path, ray_address="local",
                       cpus_per_task=1)  # the options path of a real Ray (a GPU request would wait for a GPU here)
    cols = ["lr", "x_half_width", "seed", "step", "metric"]
    a = local_sweep.sort_values(cols).reset_index(drop=True)
    b = on_ray.sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_a_stopped_sweep_trains_only_the_missing_points(tmp_path):
    grid = ["lr=0.01,0.03", "n_context=4,6"]  # two units
    trained: list[bool] = []
    first = run_sweep("gd-equivalence", "smoke", grid, seeds=1, sets=SETS, out=tmp_path, stop_after=1,
                      on_unit=lambda u, t: trained.append(t))
    assert trained == [True] and first.n_context.nunique() == 1
    trained.clear()
    full = run_sweep("gd-equivalence", "smoke", grid, seeds=1, sets=SETS, out=tmp_path,
                     on_unit=lambda u, t: trained.append(t))
    assert sorted(trained) == [False, True]  # one unit read from disk, one trained
    assert set(full.n_context) == {4, 6}
    kept = full[full.n_context == first.n_context.iloc[0]].sort_values(["lr", "seed", "step", "metric"])
    pd.testing.assert_frame_equal(kept.reset_index(drop=True),
                                  first.sort_values(["lr", "seed", "step", "metric"]).reset_index(drop=True))


def test_cli_sweep_prints_a_summary_and_writes_the_table(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mesalab.cli import app

    args = ["sweep", "gd-equivalence", "--scale", "smoke", "--grid", "lr=0.01,0.03", "--seeds", "1",
            "--out", str(tmp_path)] + [a for s in SETS for a in ("--set", s)]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "trained: 2 point(s)" in res.output and "test_loss" in res.output
    assert (tmp_path / "sweep.parquet").exists()
    again = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert "already done" in again.output
    monkeypatch.chdir(tmp_path / "parts")
    bad = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["sweep", "gd-equivalence", "--grid", "lrr=1"])
    assert bad.exit_code == 2 and "valid keys" in bad.output
    assert not (tmp_path / "parts" / "runs").exists()  # without --out, no folder is made for a sweep that cannot run


def test_a_diverging_point_is_frozen_and_marked_not_fatal(tmp_path):
    table = run_sweep("gd-equivalence", "smoke", ["lr=0.01,1e6"], seeds=1, sets=SETS + ["init_scale=100"],
                      out=tmp_path)
    alive = table[(table.metric == "alive") & (table.step == 20)].set_index("lr").value
    assert alive[0.01] == 1.0 and alive[1e6] == 0.0
    healthy = table[(table.metric == "test_loss") & (table.lr == 0.01)].value
    assert healthy.notna().all()


def test_ray_task_options_ask_for_gpus_and_cpus_and_set_xla_memory_before_jax_starts():
    from mesalab.sweep import ray_task_options

    assert ray_task_options() == {}  # Ray's defaults, nothing in the environment
    assert ray_task_options(cpus_per_task=2) == {"num_cpus": 2}
    whole = ray_task_options(gpus_per_task=1, cpus_per_task=4)
    assert whole == {"num_cpus": 4, "num_gpus": 1,
                     "runtime_env": {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}}
    shared = ray_task_options(gpus_per_task=0.25)["runtime_env"]["env_vars"]
    assert shared == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.25"}
    # Ray packs floor(1 / 0.3) = 3 tasks on a GPU: each gets a third of its memory.
    assert ray_task_options(gpus_per_task=0.3)["runtime_env"]["env_vars"]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.3333"
    assert ray_task_options(gpus_per_task=2)["num_gpus"] == 2


@pytest.mark.parametrize("kwargs,flag", [({"gpus_per_task": -1}, "--gpus-per-task = -1 is not allowed"),
                                         ({"cpus_per_task": -0.5}, "--cpus-per-task = -0.5 is not allowed"),
                                         ({"gpus_per_task": 1.5}, "--gpus-per-task = 1.5 is not allowed")])
def test_invalid_ray_resources_are_refused_naming_the_flag(kwargs, flag):
    from mesalab.sweep import ray_task_options

    with pytest.raises(ConfigError, match=flag):
        ray_task_options(**kwargs)


class FakeRay:
    """Stands in for the `ray` module: records what each task asked for and returns a table without training."""

    def __init__(self):
        self.options, self.calls, self.initialised = [], [], False

    def is_initialized(self):
        return self.initialised

    def init(self, *args, **kwargs):
        self.initialised = True

    def shutdown(self):
        self.initialised = False

    def remote(self, fn):
        fake = self

        class Remote:
            def options(self, **opts):
                fake.options.append(opts)
                return self

            def remote(self, study, base, points):
                fake.calls.append((fn.__name__, study, points))
                rows = [{"step": 1, "seed": 0, "metric": "test_loss", "value": 0.5, **p} for p in points]
                return FakeRef(pd.DataFrame(rows))

        return Remote()

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.frame


class FakeRef:
    def __init__(self, frame):
        self.frame = frame


def test_gpu_and_cpu_requests_reach_each_remote_call(monkeypatch, tmp_path):
    import sys

    from typer.testing import CliRunner

    from mesalab.cli import app

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    args = ["sweep", "gd-equivalence", "--scale", "smoke", "--grid", "lr=0.01,0.03", "--grid", "n_context=4,6",
            "--seeds", "1", "--out", str(tmp_path), "--ray", "local", "--gpus-per-task", "0.5", "--cpus-per-task",
            "2"] + [a for s in SETS for a in ("--set", s)]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert res.exit_code == 0, res.output
    assert [c[0] for c in fake.calls] == ["train_unit", "train_unit"]  # two programs, two Ray tasks
    assert fake.options == [{"num_cpus": 2.0, "num_gpus": 0.5, "runtime_env": {"env_vars": {
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}}}]
    assert not fake.initialised  # the sweep shut down the Ray it started


def test_cli_refuses_bad_ray_resources_naming_the_flag(tmp_path):
    from typer.testing import CliRunner

    from mesalab.cli import app

    runner = CliRunner(env={"COLUMNS": "200"})
    base = ["sweep", "gd-equivalence", "--scale", "smoke", "--grid", "lr=0.01,0.03", "--out", str(tmp_path)]
    res = runner.invoke(app, base + ["--ray", "local", "--gpus-per-task", "-1"])
    assert res.exit_code == 2 and "--gpus-per-task = -1.0 is not allowed; expected a number >= 0" in res.output
    res = runner.invoke(app, base + ["--ray", "local", "--cpus-per-task", "-2"])
    assert res.exit_code == 2 and "--cpus-per-task = -2.0 is not allowed" in res.output
    res = runner.invoke(app, base + ["--gpus-per-task", "1"])  # without --ray there is no task to ask for a GPU
    assert res.exit_code == 2 and "add --ray ADDRESS" in res.output
    assert not (tmp_path / "parts").exists()  # nothing was trained
