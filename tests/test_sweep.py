"""Sweeps: grouping into ensembles, local vs Ray, and resuming a stopped sweep."""

import pandas as pd
import pytest

from mesalab.config import ConfigError
from mesalab.studies.runner import study_config
from mesalab.sweep import parse_grid, plan, run_sweep
from mesalab.studies.gd_equivalence import Config

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
    on_ray = run_sweep("gd-equivalence", "smoke", GRID, seeds=2, sets=SETS, out=tmp_path, ray_address="local")
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


def test_cli_sweep_prints_a_summary_and_writes_the_table(tmp_path):
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
    bad = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["sweep", "gd-equivalence", "--grid", "lrr=1"])
    assert bad.exit_code == 2 and "valid keys" in bad.output


def test_a_diverging_point_is_frozen_and_marked_not_fatal(tmp_path):
    table = run_sweep("gd-equivalence", "smoke", ["lr=0.01,1e6"], seeds=1, sets=SETS + ["init_scale=100"],
                      out=tmp_path)
    alive = table[(table.metric == "alive") & (table.step == 20)].set_index("lr").value
    assert alive[0.01] == 1.0 and alive[1e6] == 0.0
    healthy = table[(table.metric == "test_loss") & (table.lr == 0.01)].value
    assert healthy.notna().all()
