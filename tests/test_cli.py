from typer.testing import CliRunner

from mesalab.cli import app

runner = CliRunner(env={"COLUMNS": "300"})


def test_list_names_the_default_study():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0 and "gd-equivalence" in res.output


def test_run_smoke_trains_and_prints_the_claims_table():
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "smoke", "--seeds", "1"])
    assert res.exit_code == 0, res.output
    assert "within 2% of optimal one-step GD" in res.output and ("PASS" in res.output or "FAIL" in res.output)


def test_unknown_study_and_scale_list_the_known_ones():
    res = runner.invoke(app, ["run", "gd-equivalance"])
    assert res.exit_code != 0 and "known studies: gd-equivalence" in res.output
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "huge"])
    assert res.exit_code != 0 and "smoke, cpu, paper" in res.output
