"""How a study judges a paper's finding: rows, their rules, their guards and their nulls.

A study returns rows of two kinds (DESIGN.md §4):
- **findings**: what a paper found about trained models, statements that could come out false. Only they count in
  "passed / total". Each names its **null**: the same pipeline on untrained models (the runner re-runs every study
  that way and attaches the null's value to each row), and where it fits a control with the mechanism removed.
- **checks**: identities, constructions and baseline implementations (an exact construction equals its algorithm, a
  baseline reproduces a reference number). They are shown in their own table and never counted as findings.

The protocol's rules, stated once:
- **Seeds.** A finding over seeds passes when a strict majority of them satisfies its threshold (`majority`: 2 of 2,
  2 of 3, 3 of 4, 3 of 5). The measured number is the statistic judged: the value of the worst seed inside that
  majority (`judged`), with every seed's value beside it. A seed that never learned or never made a transition (nan)
  counts against; no seed is dropped.
- **Learned.** A finding about a trained model first asks that the model learned: its loss beats the best trivial
  predictor by the margin the row states (`Learned`). Seeds that did not learn count as not satisfying the threshold.
- **Converged.** A finding about the end of training is judged only when training converged: the median (over
  seeds) evaluation loss fell by less than `CONVERGED_DROP` over the last quarter of training (`convergence`).
  Otherwise the verdict is INCONCLUSIVE, with the value and the budget that would decide it.
  - The quarter is measured in optimizer time, Σ η_t / η_peak (`train.optim.optimizer_time`), not in steps: a
    schedule that decays the rate to about 0 stops the loss at any budget, without the model having converged.
  - The fall is relative to the loss at the quarter's start, except for a cross-entropy, which on a solved task
    keeps falling toward 0 as the logits grow while the predictions stay the same: there it is measured in units of
    the uniform predictor's loss log C.
  - Both refinements came after results were seen (issue 14's review); a row whose verdict they change lists the
    verdict under the earlier rule (last quarter of the steps, relative fall) as a definition change.
- **Null.** A finding that also passes on its null cannot tell trained from untrained models; the runner then
  makes it INCONCLUSIVE and says so (`attach_nulls`).
- **Definitions.** Thresholds and definitions are fixed in each study's `claims.py`, with their sources, before
  looking at results. A definition changed after a result was seen is listed on its row (`DefinitionChange`) with the
  verdict under the old definition.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import numpy as np

from mesalab.studies.convergence import (  # noqa: F401  (the convergence rule, re-exported with the others)
    CONVERGED_DROP, CONVERGENCE_CHANGE, CONVERGENCE_WHY, Convergence, convergence, cross_entropy_convergence,
    least_converged,
)

KINDS = ("finding", "check")
VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE", "NOT RUN")
SEED_RULE = "a strict majority of seeds"


def majority(n: int) -> int:
    """Seeds that must satisfy a finding over n seeds: a strict majority."""
    return n // 2 + 1


def format_value(x: float | None, unit: str = "") -> str:
    """How every number of a row is shown: "–" for none, "nan", a percentage for unit "%", else 4 digits."""
    if x is None:
        return "–"
    if not math.isfinite(x):
        return "nan"
    return f"{100 * x:.3g}%" if unit == "%" else f"{x:.4g}"


@dataclasses.dataclass(frozen=True)
class Rule:
    """A threshold on one value: `op` is "<=", "<", ">=", ">" or "|x|<=" (the magnitude at most `bound`).
    unit "%" shows values and bound as percentages; source: where the threshold comes from."""

    op: str
    bound: float
    source: str
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in ("<=", "<", ">=", ">", "|x|<="):
            raise ValueError(f"Rule.op = {self.op!r}; expected one of <=, <, >=, >, |x|<=")

    def holds(self, values: Any) -> np.ndarray:
        """Elementwise: does each value satisfy the rule (nan never does)."""
        v = np.asarray(values, float)
        with np.errstate(invalid="ignore"):
            out = {"<=": v <= self.bound, "<": v < self.bound, ">=": v >= self.bound, ">": v > self.bound,
                   "|x|<=": np.abs(v) <= self.bound}[self.op]
        return out & np.isfinite(v)

    def badness(self, values: Any) -> np.ndarray:
        """How far from passing each value is, for ordering seeds from best to worst (nan is worst)."""
        v = np.asarray(values, float)
        bad = {"<=": v, "<": v, ">=": -v, ">": -v, "|x|<=": np.abs(v)}[self.op]
        return np.where(np.isfinite(v), bad, np.inf)

    def format(self, x: float | None) -> str:
        return format_value(x, self.unit)

    @property
    def text(self) -> str:
        op = {"<=": "≤", "<": "<", ">=": "≥", ">": ">", "|x|<=": "|x| ≤"}[self.op]
        return f"{op} {self.format(self.bound)}"


def at_most(bound: float, source: str, unit: str = "") -> Rule:
    return Rule("<=", bound, source, unit)


def below(bound: float, source: str, unit: str = "") -> Rule:
    return Rule("<", bound, source, unit)


def at_least(bound: float, source: str, unit: str = "") -> Rule:
    return Rule(">=", bound, source, unit)


def above(bound: float, source: str, unit: str = "") -> Rule:
    return Rule(">", bound, source, unit)


def within(bound: float, source: str, unit: str = "") -> Rule:
    """|value| ≤ bound (e.g. a relative difference either side)."""
    return Rule("|x|<=", bound, source, unit)


def judged(values: Sequence[float], rule: Rule, need: int) -> float:
    """The statistic a finding over seeds is judged on: the `need`-th best seed's value under `rule`. It satisfies
    the rule exactly when at least `need` seeds do."""
    v = np.asarray(values, float).ravel()
    order = np.argsort(rule.badness(v), kind="stable")
    return float(v[order[need - 1]])


@dataclasses.dataclass(frozen=True)
class Learned:
    """Whether each seed's model learned: `per_seed` booleans and the rule in words (e.g. "loss ≤ 0.9 × the zero
    predictor's 0.43")."""

    per_seed: tuple[bool, ...]
    text: str

    @staticmethod
    def beats(losses: Sequence[float], trivial: float, margin: float, trivial_name: str = "the best trivial predictor"
              ) -> "Learned":
        """A seed learned when its loss is at most (1 − margin) × the trivial predictor's loss."""
        loss = np.asarray(losses, float).ravel()
        ok = tuple(bool(x) for x in np.isfinite(loss) & (loss <= (1 - margin) * trivial))
        return Learned(ok, f"loss ≤ {1 - margin:g} × {trivial:.4g}, the loss of {trivial_name}")


@dataclasses.dataclass(frozen=True)
class DefinitionChange:
    """A definition changed after a result was seen: what changed, why (from the paper), and the verdict (and
    value, where computed) under the old definition."""

    what: str
    why: str
    old_verdict: str
    old_value: float | None = None


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of a study's table.

    id: a stable key (null rows are matched to measured rows by it); kind: "finding" or "check"; claim: the
    statement; source: where the paper makes it; paper: its number or statement; measured: the statistic the verdict
    is judged on (None when not run); threshold: the rule in words; threshold_source: where the threshold comes
    from; verdict: PASS, FAIL, INCONCLUSIVE or NOT RUN; reason: why, for every verdict but PASS; per_seed: every
    seed's value; needed: how many seeds must satisfy the rule; null: the null control in words; null_value and
    null_verdict: the row on untrained models (filled by the runner); detail: anything else; unit: "" or "%";
    changes: definitions changed after a result was seen, with the old verdict; learned: per seed, whether the
    model learned (empty: no learned guard); unguarded: the statistic over every seed, learned or not;
    guard_only: the row fails only because of the learned guard (its statistic alone would pass).
    """

    id: str
    kind: str
    claim: str
    source: str
    paper: str
    measured: float | None
    threshold: str
    threshold_source: str
    verdict: str
    reason: str = ""
    per_seed: tuple[float, ...] = ()
    needed: str = ""
    null: str = ""
    null_value: float | None = None
    null_verdict: str = ""
    detail: str = ""
    unit: str = ""
    changes: tuple[DefinitionChange, ...] = ()
    learned: tuple[bool, ...] = ()
    unguarded: float | None = None
    guard_only: bool = False

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"Claim.verdict = {self.verdict!r}; expected one of {', '.join(VERDICTS)}")
        if self.kind not in KINDS:
            raise ValueError(f"Claim.kind = {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == "finding" and not self.null:
            raise ValueError(f"finding {self.id!r} names no null control; every finding needs one")
        if self.verdict in ("FAIL", "INCONCLUSIVE", "NOT RUN") and not self.reason:
            raise ValueError(f"claim {self.id!r} is {self.verdict} without a reason")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["per_seed"] = [_json_float(x) for x in self.per_seed]
        for k in ("measured", "null_value", "unguarded"):
            d[k] = _json_float(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Claim":
        """A row read back from claims.json (rows written before the finding/check split read as findings)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        d.setdefault("id", d.get("claim", "")[:40])
        d.setdefault("kind", "finding")
        d.setdefault("threshold_source", "")
        d.setdefault("null", "not recorded (a run from before nulls were computed)")
        if d.get("verdict") in ("FAIL", "INCONCLUSIVE", "NOT RUN") and not d.get("reason"):
            d["reason"] = d.get("detail") or "not recorded"
        d["per_seed"] = tuple(np.nan if x is None else x for x in d.get("per_seed", ()))
        d["changes"] = tuple(DefinitionChange(**c) for c in d.get("changes", ()))
        d["learned"] = tuple(d.get("learned", ()))
        return cls(**d)

    def fmt(self, x: float | None) -> str:
        return format_value(x, self.unit)

    @property
    def measured_text(self) -> str:
        # None is "not run", or a statistic that does not exist (nan: e.g. no transition), which JSON stores as null
        return "nan" if self.measured is None and self.verdict != "NOT RUN" else self.fmt(self.measured)

    @property
    def null_text(self) -> str:
        if not self.null_verdict:
            return self.fmt(self.null_value)
        value = "nan" if self.null_value is None and self.null_verdict != "NOT RUN" else self.fmt(self.null_value)
        return f"{value} ({self.null_verdict})"

    @property
    def per_seed_text(self) -> str:
        """Every seed's value; a seed whose model did not learn is marked, since it counts as failing."""
        marks = self.learned or (True,) * len(self.per_seed)
        return ", ".join(self.fmt(x) + ("" if ok else " (not learned)") for x, ok in zip(self.per_seed, marks))


def _json_float(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def finding(id: str, claim: str, source: str, paper: str, values: Sequence[float] | float, rule: Rule, *,
            null: str, need: int | None = None, learned: Learned | None = None,
            converged: Convergence | None = None, budget: str = "", detail: str = "",
            changes: Iterable[DefinitionChange] = (), kind: str = "finding") -> Claim:
    """A row judged by `rule` on `values` (one per seed, or one number).

    need: seeds that must satisfy the rule (default: a strict majority). learned: per-seed learning guard; seeds
    that did not learn count as failing. converged: for findings about the end of training, the convergence of
    their training run; when it is False the verdict is INCONCLUSIVE and `budget` says what would decide it.
    The verdict under the old median-seed rule is recorded as a definition change where it differs."""
    v = np.atleast_1d(np.asarray(values, float)).ravel()
    n = v.size
    need = majority(n) if need is None else need
    if not 1 <= need <= n:
        raise ValueError(f"{id}: need = {need} seeds out of {n}")
    ok_learned = np.ones(n, bool) if learned is None else np.asarray(learned.per_seed, bool)
    judged_values = np.where(ok_learned, v, np.nan)  # a seed that did not learn counts as failing
    stat = judged(judged_values, rule, need)  # the measured number: the need-th best learned seed
    count = int(rule.holds(judged_values).sum())
    passes = count >= need
    raw_passes = int(rule.holds(v).sum()) >= need  # the rule alone, every seed counted as it is
    needed = f"{need} of {n} seeds" if n > 1 else ""
    unlearned = int(n - ok_learned.sum())
    reason = ""
    if not passes:
        reason = (f"{count} of {n} seeds satisfy {rule.text}; {need} needed" if n > 1 else
                  f"{rule.format(float(v[0]))} does not satisfy {rule.text}")
        if unlearned:
            reason += f" ({unlearned} of {n} seeds did not learn: {learned.text})"
    verdict = "PASS" if passes else "FAIL"
    if learned is not None and ok_learned.sum() < need:
        verdict, reason = "FAIL", (f"only {int(ok_learned.sum())} of {n} seeds learned ({learned.text}); "
                                   f"{need} needed")
    judged_verdict = verdict  # before the convergence rule
    if converged is not None and not converged.converged:
        verdict = "INCONCLUSIVE"
        not_yet = (f"; only {int(ok_learned.sum())} of {n} seeds have learned so far ({learned.text})"
                   if learned is not None and ok_learned.sum() < need else "")
        reason = (f"training did not converge: {converged.text}; the value at this budget is "
                  f"{rule.format(stat)} ({'passes' if passes else 'fails'} {rule.text}){not_yet}"
                  + (f". {budget[:1].upper()}{budget[1:]}" if budget else ""))
    changes = tuple(changes)
    if converged is not None and converged.changed:
        changes += (DefinitionChange(
            f"{CONVERGENCE_CHANGE} (here the old rule's fall: {converged.old_drop:.1%}; the new: {converged.drop:.1%})",
            CONVERGENCE_WHY, judged_verdict if converged.old_converged else "INCONCLUSIVE"),)
    if n > 2 and kind == "finding":
        old = float(np.median(v))  # the old rule: the median seed, every seed counted as it is
        old_verdict = "PASS" if bool(rule.holds(old)) else "FAIL"
        if old_verdict != ("PASS" if raw_passes else "FAIL"):
            changes += (DefinitionChange(
                "judged on the median seed → on a strict majority of seeds (the worst seed within it)",
                "issue 14: the shown number must be the judged one, and seeds that never learn count against",
                old_verdict, old),)
    return Claim(id, kind, claim, source, paper, stat, rule.text + (f" in {needed}" if needed else ""), rule.source,
                 verdict, reason, tuple(float(x) for x in v), needed, null, None, "", detail, rule.unit, changes,
                 tuple(bool(x) for x in ok_learned) if learned is not None else (),
                 judged(v, rule, need) if learned is not None else None,
                 bool(learned is not None and raw_passes and not passes))


def check(id: str, claim: str, source: str, paper: str, values: Sequence[float] | float, rule: Rule, *,
          need: int | None = None, detail: str = "", changes: Iterable[DefinitionChange] = ()) -> Claim:
    """A check: an identity, construction or baseline implementation, judged like a finding but never counted as
    one and with no null."""
    row = finding(id, claim, source, paper, values, rule, null="–", need=need, detail=detail, changes=changes,
                  kind="check")
    return dataclasses.replace(row, null="")


def not_run(id: str, claim: str, source: str, paper: str, threshold: str, why: str, *, kind: str = "finding",
            null: str = "untrained models") -> Claim:
    return Claim(id, kind, claim, source, paper, None, threshold, "", "NOT RUN", why,
                 null=null if kind == "finding" else "")


def attach_nulls(rows: Sequence[Claim], null_rows: Sequence[Claim]) -> list[Claim]:
    """Each finding gets its null's value and verdict (matched by id). A finding that passes on its null cannot tell
    trained from untrained models: it becomes INCONCLUSIVE, and says so."""
    by_id = {r.id: r for r in null_rows}
    out = []
    for row in rows:
        null = by_id.get(row.id)
        if row.kind != "finding" or null is None:
            out.append(row)
            continue
        # The null's statistic: over its learned seeds, or over every seed when none learned (the usual case)
        finite = null.measured is not None and math.isfinite(null.measured)
        value = null.measured if finite or null.unguarded is None else null.unguarded
        row = dataclasses.replace(row, null_value=value, null_verdict=null.verdict)
        if null.guard_only:  # say so: here the statistic alone cannot tell trained from untrained models
            row = dataclasses.replace(row, null=(
                f"{row.null}. On untrained models the statistic alone ({null.fmt(null.unguarded)}) would pass; only "
                "the learned guard fails them"))
        if null.verdict == "PASS" and row.verdict == "PASS":
            row = dataclasses.replace(row, verdict="INCONCLUSIVE", reason=(
                f"it passes on its null too ({row.null}: {null.measured_text}), so this statistic cannot tell trained "
                "from untrained models"))
        out.append(row)
    return out


def counts(rows: Iterable[Claim | dict[str, Any]], kind: str) -> tuple[int, int]:
    """(passed, total) among rows of one kind."""
    rows = [r if isinstance(r, Claim) else Claim.from_dict(r) for r in rows]
    mine = [r for r in rows if r.kind == kind]
    return sum(r.verdict == "PASS" for r in mine), len(mine)


def per_seed(fmt: str, values: Iterable[float]) -> str:
    """'per seed: …' with each value formatted by `fmt` (e.g. '{:+.1%}')."""
    return "per seed: " + ", ".join(fmt.format(x) for x in values)


def value_of(rows: Sequence[Claim], id: str) -> Claim:
    """The row with this id (for tests and figures)."""
    for r in rows:
        if r.id == id:
            return r
    raise KeyError(f"no claim with id {id!r}; ids: {', '.join(r.id for r in rows)}")

