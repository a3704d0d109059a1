"""The run store, claims, figures, report and CLI around one shared smoke run of the default study."""

import json
import shutil
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from mesalab import load_run
from mesalab.cli import app
from mesalab.config import ConfigError
from mesalab.studies.runner import run_study, study_config

runner = CliRunner(env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gd"
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "smoke", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_run_writes_every_artefact(smoke_run):
    out, output = smoke_run
    for name in ("run.json", "config.json", "environment.json", "metrics.parquet", "results.json", "claims.json",
                 "figures.json", "report.html", "figures/loss.png", "figures/alignment.png", "figures/weights.png",
                 "figures/ood.png", "figures/iterated.png", "figures/depth.png", "checkpoints/lsa-2/checkpoint.safetensors",
                 "checkpoints/lsa/checkpoint.safetensors"):
        assert (out / name).exists(), name
    assert "findings passed" in output and "checks passed" in output and "report:" in output
    import os

    umask = os.umask(0)
    os.umask(umask)
    for name in ("claims.json", "report.html", "checkpoints/lsa/checkpoint.safetensors", "figures/loss.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # readable by others, as umask allows
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "done" and meta["seconds"] > 0 and meta["scale"] == "smoke" and meta["split"] == "members"
    env = json.loads((out / "environment.json").read_text())
    assert env["versions"]["jax"] and env["device"].startswith("cpu")
    assert env["packages"]["jax"] == env["versions"]["jax"] and "pytest" in env["packages"]  # the full list
    assert env["git_commit"] is None or len(env["git_commit"].split("+")[0]) == 40  # the code that ran


def test_metrics_are_appended_per_part_while_training(smoke_run):
    from mesalab.store import load_run
    from mesalab.train.callbacks import read_metrics_log

    out, _ = smoke_run
    run = load_run(out)
    for part in ("lsa", "lsa-2"):
        live = read_metrics_log(out / "checkpoints" / part / "metrics.csv")
        final = run.metrics[run.metrics.part == part].reset_index(drop=True)
        assert len(live) == len(final) > 0
        assert (live.value.to_numpy() == final.value.to_numpy()).all()


def test_study_figures_are_matplotlib_figures_outside_pyplot(smoke_run, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure as MplFigure

    from mesalab.store import load_run
    from mesalab.studies import get_study
    from mesalab.studies.protocol import RunContext, draw_figures

    backend = matplotlib.get_backend()
    before = plt.get_fignums()
    out, _ = smoke_run
    run = load_run(out)
    figs = draw_figures(get_study("gd-equivalence"), run.config, run.results, RunContext(tmp_path, progress=False, metrics=[run.metrics]))
    assert figs and all(isinstance(f.figure, MplFigure) for f in figs)
    assert all((tmp_path / "figures" / f.file).exists() for f in figs)
    assert plt.get_fignums() == before and matplotlib.get_backend() == backend  # a notebook's state is untouched


def test_claims_json_holds_findings_with_their_nulls_and_checks(smoke_run):
    data = json.loads((smoke_run[0] / "claims.json").read_text())
    assert data["study"] == "gd-equivalence" and data["claims"]
    kinds = {c["kind"] for c in data["claims"]}
    assert kinds == {"finding", "check"}
    for c in data["claims"]:
        assert {"id", "kind", "measured", "per_seed", "threshold", "threshold_source", "verdict", "reason", "null",
                "null_value", "null_verdict", "changes"} <= set(c)
        if c["kind"] == "finding":
            assert c["null"] and c["null_verdict"] in ("FAIL", "INCONCLUSIVE", "NOT RUN"), c["id"]
        if c["verdict"] != "PASS":
            assert c["reason"], c["id"]
    assert (smoke_run[0] / "null_results.json").exists()


def test_load_run_reads_config_metrics_and_models(smoke_run):
    run = load_run(smoke_run[0])
    assert run.config.steps == 200 and run.config.seeds == 2
    assert set(run.metrics.columns) >= {"step", "member", "seed", "metric", "value", "part"}
    assert run.metrics.query("metric == 'test_loss'").step.max() == 200
    models = run.models("lsa")
    assert models.blocks[0].attn.W_Q.shape == (2, 1, 11, 11)
    assert len(run.results["members"]["loss"]) == 2 and run.results["eta"] > 0


def test_load_run_reads_a_run_made_before_the_study_gained_a_key(smoke_run, tmp_path):
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(smoke_run[0], old)
    cfg = json.loads((old / "config.json").read_text())
    del cfg["x_half_width"]  # as if the key had been added to the study since
    (old / "config.json").write_text(json.dumps(cfg))
    run = load_run(old)
    assert run.config.x_half_width == type(run.config)().x_half_width and run.config.steps == 200


def test_report_is_self_contained_with_claims_first(smoke_run):
    html = (smoke_run[0] / "report.html").read_text()
    assert html.index("findings-table") < html.index("checks-table") < html.index('id="figures"') < html.index('id="config"')
    assert "findings passed" in html and "checks passed" in html
    assert "data:image/png;base64," in html and 'src="http' not in html
    (smoke_run[0] / "report.html").unlink()
    res = runner.invoke(app, ["report", str(smoke_run[0])])
    assert res.exit_code == 0 and (smoke_run[0] / "report.html").exists()


def test_report_renders_in_headless_chromium(smoke_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    report = smoke_run[0] / "report.html"
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    dom = subprocess.run(args + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert '<table id="findings-table">' in dom and '<table id="checks-table">' in dom
    shot = tmp_path / "report.png"
    subprocess.run(args + [f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1200, 1600)
    lo, hi = img.getextrema()
    assert hi - lo > 100  # something was drawn, not a blank page
    assert '<img alt="Test loss during training" src="data:image/png;base64,' in dom


def test_rejudge_judges_the_stored_results_again(smoke_run, tmp_path):
    out = tmp_path / "gd"
    shutil.copytree(smoke_run[0], out, ignore=shutil.ignore_patterns("checkpoints"))
    before = json.loads((out / "claims.json").read_text())
    res = runner.invoke(app, ["rejudge", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "claims.json").read_text()) == before   # the same code judges the same results
    kept = list(out.glob("claims.before-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == before
    assert len(json.loads((out / "run.json").read_text())["rejudged"]) == 1
    meta = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**meta, "status": "running"}))
    res = runner.invoke(app, ["rejudge", str(out)])
    assert res.exit_code == 2 and "only a finished run" in res.output and "Traceback" not in res.output


def test_runs_lists_past_runs(smoke_run):
    res = runner.invoke(app, ["runs", str(smoke_run[0].parent)])
    assert res.exit_code == 0 and "gd-equivalence" in res.output and "smoke" in res.output
    assert "findings" in res.output and "checks" in res.output


def test_set_overrides_are_validated():
    cfg = study_config("gd-equivalence", "smoke", ["lr=3e-3", "steps=50"])
    assert cfg.lr == 3e-3 and cfg.steps == 50
    with pytest.raises(ConfigError, match=r"has no field 'lrr'; did you mean 'lr'\? valid keys: .*lr"):
        study_config("gd-equivalence", "smoke", ["lrr=1"])
    with pytest.raises(ConfigError, match=r"Config.steps = 'many' is not allowed; expected int"):
        study_config("gd-equivalence", "smoke", ["steps=many"])
    with pytest.raises(ConfigError, match=r"Config.seeds = -2 is not allowed"):
        study_config("gd-equivalence", "smoke", ["seeds=-2"])
    # Tuples: bare, bracketed or empty.
    for text, want in (("2,3", (2, 3)), ("(2, 3)", (2, 3)), ("[4]", (4,)), ("()", ()), ("", ())):
        assert study_config("gd-equivalence", "smoke", [f"depths={text}"]).depths == want


def test_config_files_are_read_like_set(tmp_path):
    toml = tmp_path / "s1.toml"
    toml.write_text('lr = 3e-3\ndepths = [2, 3]\nsteps = 50\n')
    cfg = study_config("gd-equivalence", "smoke", ["steps=60"], config_file=toml)
    assert (cfg.lr, cfg.depths, cfg.steps) == (3e-3, (2, 3), 60)   # --set wins over the file
    yaml_file = tmp_path / "s1.yaml"
    yaml_file.write_text("lr: 3.0e-3\ndepths: [2, 3]\nsteps: 50\n")
    cfg = study_config("gd-equivalence", "smoke", config_file=yaml_file)
    assert (cfg.lr, cfg.depths, cfg.steps) == (3e-3, (2, 3), 50)
    (tmp_path / "bad.yml").write_text("lr: [1, \n")
    with pytest.raises(ConfigError, match="bad.yml' is not valid YAML"):
        study_config("gd-equivalence", "smoke", config_file=tmp_path / "bad.yml")
    (tmp_path / "bad.json").write_text('{"lrr": 1}')
    with pytest.raises(ConfigError, match=r"bad.json: .*has no field 'lrr'; did you mean 'lr'"):
        study_config("gd-equivalence", "smoke", config_file=tmp_path / "bad.json")
    (tmp_path / "steps.json").write_text('{"steps": 2.5}')
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "smoke", "--config", str(tmp_path / "steps.json")])
    assert res.exit_code == 2 and "steps = '2.5' is not allowed; expected int" in res.output


def test_config_lists_keys_defaults_and_presets():
    res = runner.invoke(app, ["config", "gd-equivalence"])
    assert res.exit_code == 0 and "x_half_width" in res.output and "smoke" in res.output and "paper" in res.output
    res = runner.invoke(app, ["config", "gd-equivalance"])
    assert res.exit_code == 2 and "known studies" in res.output


def test_cli_errors_are_one_line():
    res = runner.invoke(app, ["run", "gd-equivalance", "--scale", "smoke"])
    assert res.exit_code == 2 and "known studies: gd-equivalence" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "huge"])
    assert res.exit_code == 2 and "smoke, quick, cpu, paper" in res.output
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "smoke", "--set", "x_half_width=-1"])
    assert res.exit_code == 2 and "x_half_width = -1.0 is not allowed" in res.output
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "smoke", "--split", "rows"])
    assert res.exit_code == 2 and "--split rows is not allowed; expected one of members, batch" in res.output


def test_list_shows_summary_and_source_and_version():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0 and "gd-equivalence" in res.output and "von Oswald" in res.output
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("mesalab ")


def test_a_killed_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    """SIGKILL `mesalab run` after its first checkpoint, resume it, and compare with an uninterrupted run."""
    import os
    import signal
    import sys
    import time

    sets = ["steps=600", "chunk_steps=25", "batch_size=256", "n_validation=256", "eval_batch_size=128"]
    args = [a for s in sets for a in ("--set", s)]
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "mesalab.cli", "run", "--scale", "smoke", "--out", str(cut), "--no-progress"] + args
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = cut / "checkpoints" / "lsa" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = json.loads((cut / "run.json").read_text())
    assert first["status"] == "running", "the run finished before the kill"
    resumed = run_study("gd-equivalence", "smoke", sets=sets, out=cut, resume=True, progress=False)
    meta = json.loads((cut / "run.json").read_text())
    assert meta["started"] == first["started"] and len(meta["resumed"]) == 1 and meta["status"] == "done"
    full = run_study("gd-equivalence", "smoke", sets=sets, out=tmp_path / "full", progress=False)
    a, b = (json.loads((d / "results.json").read_text()) for d in (full, resumed))
    for r in (a, b):  # wall-clock timings are the only numbers allowed to differ
        r.pop("train_seconds")
        r["depth"].pop("seconds")
        r["nonlinear"].pop("seconds")
    assert a == b
    pd.testing.assert_frame_equal(pd.read_parquet(full / "metrics.parquet"), pd.read_parquet(resumed / "metrics.parquet"))
    with pytest.raises(FileExistsError, match="--resume"):
        run_study("gd-equivalence", "smoke", sets=sets, out=full, progress=False)
    done = json.loads((full / "run.json").read_text())
    run_study("gd-equivalence", "smoke", sets=sets, out=full, resume=True, progress=False)   # a done run, again
    again = json.loads((full / "run.json").read_text())
    assert again["started"] == done["started"] and len(again["resumed"]) == 1 and again["seconds"] > done["seconds"]


def test_divergence_reaches_the_cli_user_as_one_line(tmp_path):
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "smoke", "--out", str(tmp_path), "--no-progress",
                              "--set", "lr=1e6", "--set", "init_scale=100", "--set", "steps=50"])
    assert res.exit_code == 2 and "training diverged: member" in res.output and "Traceback" not in res.output


def test_default_run_folders_cannot_collide(tmp_path):
    from mesalab import store

    made = {store.new_run_dir("gd-equivalence", None, root=tmp_path) for _ in range(3)}
    assert len(made) == 3 and all(p.is_dir() for p in made)  # same second: suffixes -2, -3


def test_help_and_list_start_without_importing_jax():
    """`mesalab --help` and `mesalab list` answer at once because they never load JAX (the time is measured in
    README, not here); `describe` reads what the study modules say."""
    import subprocess
    import sys

    from mesalab.studies import STUDIES, describe, get_study

    code = ("import sys; from typer.testing import CliRunner; from mesalab.cli import app; r = CliRunner()\n"
            "assert r.invoke(app, ['--help']).exit_code == 0 and r.invoke(app, ['list']).exit_code == 0\n"
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    for name in STUDIES:
        mod = get_study(name)
        assert describe(name) == {"NAME": mod.NAME, "SUMMARY": mod.SUMMARY, "SOURCE": mod.SOURCE}
