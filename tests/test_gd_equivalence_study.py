"""gd-equivalence end to end on its null (untrained models, smoke scale): every finding is FAIL, INCONCLUSIVE or
NOT RUN there, the rows are well formed, and the pure baselines are cached so the null run does not refit them.
(The trained smoke run, its artefacts and report are covered by tests/test_runs.py.)"""

import numpy as np
import pytest

from mesalab.studies import get_study
from mesalab.studies.gd_equivalence import depth, one_layer
from mesalab.studies.runner import run_null, study_config


@pytest.fixture(scope="module")
def null(tmp_path_factory):
    study = get_study("gd-equivalence")
    cfg = study_config("gd-equivalence", "smoke")
    results = run_null(study, cfg, tmp_path_factory.mktemp("null"))
    return study, cfg, results


def test_no_finding_passes_on_untrained_models(null):
    study, cfg, results = null
    rows = study.claims(cfg, results)
    findings = [r for r in rows if r.kind == "finding"]
    assert {r.id for r in findings} >= {"gd1-loss", "sens-cos", "beats-gd", "matches-gdpp-k2", "closer-gdpp", "copy"}
    for row in findings:
        assert row.verdict in ("FAIL", "INCONCLUSIVE", "NOT RUN"), (row.id, row.measured, row.reason)
    assert len({r.id for r in rows}) == len(rows)
    # the untrained 1-layer LSA is the zero predictor: twice GD-1's loss, and the learned guard says so
    assert np.median(results["members"]["loss"]) > 1.5 * results["gd_loss"]
    # the constructions and baselines are checks, the same on the null run
    checks = {r.id: r.verdict for r in rows if r.kind == "check"}
    assert checks["gd-lsa-construction"] == "PASS" and checks["gdpp-lsa-construction"] == "PASS"


def test_baselines_are_cached_per_configuration(null):
    _, cfg, results = null
    exp = one_layer.experiment(cfg)
    before = depth.baselines.cache_info().hits
    again = depth.baselines(exp.task, exp.model, tuple(cfg.depths), cfg.n_validation, cfg.gdpp_steps,
                            cfg.gdpp_adam_steps, one_layer.ETA_FIT_SEED)
    assert depth.baselines.cache_info().hits == before + 1
    assert again["gdpp"] == results["depth"]["gdpp"]
    assert one_layer.baselines(exp.task, exp.model, cfg.n_validation)["eta"] == results["eta"]


def test_quick_scale_is_the_cpu_one_layer_part_alone():
    from mesalab.studies.gd_equivalence import PRESETS

    quick, cpu = PRESETS["quick"], PRESETS["cpu"]
    assert (quick.steps, quick.batch_size, quick.seeds, quick.lr) == (cpu.steps, cpu.batch_size, cpu.seeds, cpu.lr)
    assert quick.depths == () and quick.copy_steps == 0 and quick.nonlinear_steps == 0
