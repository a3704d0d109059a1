"""The protocol's rules (studies/verdicts.py): seed majority, the judged statistic, the learned and converged guards,
nulls and definition changes."""

import math

import numpy as np
import pytest

from mesalab.studies.verdicts import (
    Claim, DefinitionChange, Learned, above, at_most, attach_nulls, check, convergence, counts,
    cross_entropy_convergence, finding, judged, least_converged, majority, not_run, within,
)
from mesalab.train.config import TrainConfig
from mesalab.train.optim import optimizer_time

RULE = at_most(0.1, "test")


def row(values, **kw):
    return finding("r", "claim", "src", "paper", values, kw.pop("rule", RULE), null="untrained", **kw)


def test_a_strict_majority_of_seeds_must_satisfy_the_rule():
    assert [majority(n) for n in (1, 2, 3, 4, 5, 8)] == [1, 2, 2, 3, 3, 5]
    assert row([0.05, 0.06, 0.07, 0.5]).verdict == "PASS"            # 3 of 4
    two_of_four = row([0.05, 0.06, 0.5, 0.6])
    assert two_of_four.verdict == "FAIL" and "2 of 4 seeds satisfy" in two_of_four.reason
    assert two_of_four.needed == "3 of 4 seeds" and "3 of 4 seeds" in two_of_four.threshold


def test_the_measured_number_is_the_judged_seed_and_every_seed_is_kept():
    r = row([0.5, 0.01, 0.09, 0.02])
    assert r.measured == pytest.approx(0.09)                          # the worst of the best three
    assert r.per_seed == (0.5, 0.01, 0.09, 0.02)
    assert judged([3.0, -5.0, 1.0], within(2.0, "t"), 2) == 3.0       # ordered by |x| for a two-sided band
    assert judged([0.2, 0.9, np.nan], above(0.5, "t"), 1) == 0.9


def test_a_seed_that_never_learned_counts_against():
    r = row([0.05, 0.06, np.nan, np.nan])                             # two seeds made no transition
    assert r.verdict == "FAIL"
    # the median of the two finite seeds would have passed: the old rule is listed as a definition change
    assert row([0.05, 0.06, 0.07, np.nan]).verdict == "PASS"


def test_learned_guard_fails_seeds_that_did_not_beat_the_trivial_predictor():
    guard = Learned.beats([0.1, 0.1, 0.9, 0.95], trivial=1.0, margin=0.2, trivial_name="the zero predictor")
    assert guard.per_seed == (True, True, False, False)
    r = row([0.01, 0.02, 0.03, 0.04], learned=guard)
    assert r.verdict == "FAIL" and "only 2 of 4 seeds learned" in r.reason and "zero predictor" in r.reason
    ok = row([0.01, 0.02, 0.03, 0.5], learned=Learned.beats([0.1, 0.1, 0.1, 0.9], 1.0, 0.2))
    assert ok.verdict == "PASS"
    # the measured number is judged over the seeds that learned: seed 0's 0.01 does not count
    one_out = row([0.01, 0.01, 0.01, 0.5], learned=Learned.beats([0.9, 0.1, 0.1, 0.1], 1.0, 0.2))
    assert one_out.verdict == "FAIL" and one_out.measured == pytest.approx(0.5) and "1 of 4 seeds did not learn" \
        in one_out.reason
    assert one_out.guard_only and one_out.unguarded == pytest.approx(0.01) and one_out.changes == ()
    assert "0.01 (not learned)" in one_out.per_seed_text


def test_a_null_that_fails_only_by_the_learned_guard_is_named():
    guard = Learned.beats([1.0, 1.0, 1.0], trivial=1.0, margin=0.2)       # untrained: nothing learned
    null = row([0.0, 0.0, 0.0], learned=guard)                            # a statistic that passes by itself
    real = row([0.01, 0.02, 0.03], learned=Learned.beats([0.1] * 3, 1.0, 0.2))
    [out] = attach_nulls([real], [null])
    assert out.verdict == "PASS" and out.null_verdict == "FAIL" and "only the learned guard fails them" in out.null
    assert out.null_value == 0.0   # the statistic on untrained models, although none of them learned


def test_convergence_rule_and_the_inconclusive_verdict():
    steps = np.arange(0, 101, 10)
    flat = np.r_[np.linspace(1.0, 0.5, 6), np.full(5, 0.5)]
    assert convergence(steps, flat).converged
    falling = np.linspace(1.0, 0.5, 11)
    c = convergence(steps, np.stack([falling, falling * 1.01, falling]))  # median over seeds
    assert not c.converged and c.drop == pytest.approx((0.625 - 0.5) / 0.625)
    assert convergence([0], [[1.0]]) is None                              # untrained: nothing to judge
    r = row([0.01, 0.02, 0.03], converged=c, budget="train 4× longer")
    assert r.verdict == "INCONCLUSIVE" and "did not converge" in r.reason and "4× longer" in r.reason
    assert "passes" in r.reason and r.measured == pytest.approx(0.02)


def test_an_annealed_rate_is_not_convergence():
    """Loss that falls at a steady rate per unit of learning rate looks flat per step once a cosine schedule has
    decayed: the per-step rule called it converged, the optimizer-time rule does not (and the row records both)."""
    steps = np.arange(0, 1001, 50)
    train = TrainConfig(steps=1000, batch_size=8, lr=1e-2, schedule="warmup_cosine", warmup_steps=100, end_lr=0.0)
    clock = np.asarray(optimizer_time(train, steps))
    assert clock[-1] == pytest.approx(0.5 * 100 + 0.5 * 900, rel=1e-3)  # warm-up and cosine both average ½
    loss = 1.0 - 0.2 * clock / clock[-1]   # the loss falls in proportion to optimizer time
    c = convergence(steps, loss, clock)
    assert not c.converged and c.old_converged and c.changed and "optimizer time" in c.text
    assert c.old_drop < 0.02 < c.drop and 400 < c.start_step < 520     # the last quarter of time starts near 47%
    r = row([0.01, 0.02, 0.03], converged=c)
    assert r.verdict == "INCONCLUSIVE"
    [change] = r.changes
    assert change.old_verdict == "PASS" and "optimizer time" in change.what
    assert convergence(steps, loss).converged    # read per step (as if the rate were constant): the blind spot
    with pytest.raises(ValueError, match="time"):
        convergence(steps, loss, clock[::-1])


def test_a_solved_cross_entropy_is_measured_in_units_of_log_c():
    steps = np.arange(0, 101, 10)
    loss = np.r_[np.linspace(3.0, 0.1, 6), 0.1 * 0.8 ** np.arange(1, 6)]  # solved, logits still growing
    assert not convergence(steps, loss).converged                            # relative: never settles
    c = cross_entropy_convergence(steps, loss, None, 32)
    assert c.converged and c.drop == pytest.approx((loss[7] + (loss[8] - loss[7]) / 2 - loss[-1]) / math.log(32))
    assert "log 32" in c.text
    still_learning = np.linspace(3.0, 1.0, 11)
    assert not cross_entropy_convergence(steps, still_learning, None, 32).converged
    group = least_converged(c, cross_entropy_convergence(steps, still_learning, None, 32), None)
    assert not group.converged and group.old_converged is False
    assert least_converged(None, None) is None


def test_a_finding_that_passes_on_its_null_becomes_inconclusive():
    real = [row([0.01, 0.02, 0.03]), check("c", "check", "src", "ref", [0.0], RULE)]
    null_pass = attach_nulls(real, [row([0.05, 0.05, 0.05]), check("c", "check", "src", "ref", [0.0], RULE)])
    assert null_pass[0].verdict == "INCONCLUSIVE" and "passes on its null" in null_pass[0].reason
    assert null_pass[0].null_value == pytest.approx(0.05) and null_pass[0].null_verdict == "PASS"
    assert null_pass[1].verdict == "PASS" and null_pass[1].null_verdict == ""   # checks have no null
    null_fail = attach_nulls(real, [row([0.5, 0.5, 0.5])])
    assert null_fail[0].verdict == "PASS" and null_fail[0].null_verdict == "FAIL"


def test_rows_say_why_and_findings_name_their_null():
    with pytest.raises(ValueError, match="names no null"):
        Claim("x", "finding", "c", "s", "p", 1.0, "t", "src", "PASS")
    with pytest.raises(ValueError, match="without a reason"):
        Claim("x", "check", "c", "s", "p", 1.0, "t", "src", "FAIL")
    with pytest.raises(ValueError, match="verdict"):
        Claim("x", "check", "c", "s", "p", 1.0, "t", "src", "MAYBE", "why")
    skipped = not_run("n", "claim", "src", "paper", "≤ 1", "needs two depths")
    assert skipped.verdict == "NOT RUN" and skipped.measured is None


def test_rows_round_trip_through_json_and_count_by_kind():
    change = DefinitionChange("window 1–5 → 11–15", "full rank", "FAIL", 0.2)
    rows = [row([0.05, np.nan, 0.01], changes=[change]), check("c", "check", "src", "ref", [0.5], RULE)]
    back = [Claim.from_dict(r.to_dict()) for r in rows]
    assert back[0].changes[0] == change and math.isnan(back[0].per_seed[1]) and back[1].kind == "check"
    assert counts(back, "finding") == (1, 1) and counts([r.to_dict() for r in rows], "check") == (0, 1)
    legacy = {"claim": "old", "source": "s", "paper": "p", "measured": 1.0, "spread": None, "threshold": "t",
              "verdict": "FAIL", "detail": "d", "unit": ""}                 # a claims.json from before the split
    old = Claim.from_dict(legacy)
    assert old.kind == "finding" and old.reason == "d"


def test_the_old_median_rule_is_listed_where_it_gives_another_verdict():
    r = row([0.05, 0.06, 0.5, 0.6])                  # median 0.28 fails too: no change listed
    assert r.changes == ()
    r = row([0.05, 0.06, 0.07, 0.5, 0.6, 0.7])       # median 0.285: FAIL either way
    assert r.changes == ()
    r = row([0.01, 0.02, 0.2, 0.3])                  # 2 of 4 (FAIL) but median 0.11 also fails
    assert r.verdict == "FAIL"
    r = row([0.01, 0.02, 0.09, 0.3], rule=at_most(0.1, "t"))  # 3 of 4 pass; median 0.055 passes
    assert r.changes == ()
    r = row([0.01, 0.02, 0.12, 0.3], rule=at_most(0.1, "t"))  # 2 of 4 fail; median 0.07 would pass
    assert r.verdict == "FAIL" and r.changes[0].old_verdict == "PASS"
    assert r.changes[0].old_value == pytest.approx(0.07)
