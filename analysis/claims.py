"""The paper's qualitative claims as data, each with its test over the stored runs, and a verdict from an interval.

Every claim is decided on one dataset and budget from :class:`Evidence`: the per-trial frames the tables are built
from (Δm per seed against the single-task reference, the seed mean, :func:`analysis.tables.references`), the
per-epoch histories (:class:`analysis.runs.StudyData`) and the parameter-scaling table. A claim's effect is a
per-seed paired difference (or one exact count); its 95 % confidence interval is Student's t over the seeds
(mean ± t₀.₉₇₅,ₙ₋₁ · s/√n) — with the 2 to 5 seeds of a sweep a bootstrap has too few distinct resamples to cover.
TSN against single-task itself (C1) is a difference of two groups of seeds, the reference's seed noise included:
Welch's t interval; TSN's seeds are Table 1's and those any other study ran of the very same configuration. The verdict is read off
the interval, never typed: ``holds`` when it lies on the claim's side of the threshold, ``fails`` when it lies on the
other side, ``inconclusive`` when it straddles, n < 2, or data is missing (the note says which).

An inconclusive sampled claim also gets ``seeds_to_decide``: the fewest seeds at which an interval of today's mean and
standard deviation would no longer straddle (for C1.1, seeds of TSN and of the single-task reference alike) — a
plug-in projection that says whether a bigger budget could decide the claim at all, not a promise (mean and sd move
as seeds are added).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from analysis.tables import seedless
from tsn.atomic import atomic_write

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
CONFIDENCE = 0.95
INTERVAL = "t, paired by seed"
WELCH = "Welch t, TSN seeds vs the single-task reference's seeds"
EXACT = "exact"
MAX_SEEDS = 100  # seeds_to_decide beyond this is reported as more than MAX_SEEDS (infinity in the frame)

# Which experiment's study each kind of evidence comes from, in order of preference.
TABLE1 = ("baselines",)
EMBEDDING = ("embedding",)
CONVERGENCE = ("convergence", "baselines")


@dataclass
class Evidence:
    """What the claims of one dataset and budget are computed from; any part may be missing."""

    dataset: str
    budget: str
    trials: dict[str, pd.DataFrame] = field(default_factory=dict)  # experiment -> per-trial frame with delta_m
    history: dict[str, pd.DataFrame] = field(default_factory=dict)  # experiment -> per-epoch history frame
    higher_is_better: dict[str, bool] = field(default_factory=dict)  # task -> direction of its primary metric
    scaling_params: pd.DataFrame | None = None  # architecture x T -> parameter count

    def first(self, kind: str, experiments: Sequence[str]) -> tuple[str, pd.DataFrame] | None:
        frames = getattr(self, kind)
        for name in experiments:
            if name in frames and len(frames[name]):
                return name, frames[name]
        return None

    def missing(self, experiments: Sequence[str]) -> str:
        names = " or ".join(f"{e}-{self.dataset}-{self.budget} (make sweep-{e})" for e in experiments)
        return f"missing: study {names}"


@dataclass(frozen=True)
class Result:
    """A claim's measurement: effect, interval and the verdict read off it."""

    effect: float | None
    low: float | None
    high: float | None
    n: int
    verdict: str
    interval: str = INTERVAL
    note: str = ""
    seeds_to_decide: float = math.nan  # inconclusive sampled claims only; inf: more than MAX_SEEDS


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: its id, statement, test and the constants the test uses (stated as data)."""

    id: str
    text: str
    test: Callable[[Claim, Evidence], Result] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    parts: tuple[str, ...] = ()  # a claim made of earlier claims: holds when all hold, fails when any fails

    def statement(self) -> str:
        return self.text.format(**self.params)


# ------------------------------------------------------------------------------------------------ intervals
def t_half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of Student's t interval of a mean over ``n`` values of sample standard deviation ``sd``."""
    return stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of Student's t interval; low = high = NaN when n < 2."""
    data = [float(v) for v in values if not pd.isna(v)]
    n = len(data)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(data) / n
    if n < 2:
        return mean, math.nan, math.nan, n
    half = t_half_width(math.sqrt(sum((v - mean) ** 2 for v in data) / (n - 1)), n, confidence)
    return mean, mean - half, mean + half, n


@dataclass(frozen=True)
class Sample:
    """A group's mean, sample standard deviation and size (NaN sd with fewer than 2)."""

    mean: float
    sd: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        data = pd.Series([float(v) for v in values if not pd.isna(v)], dtype=float)
        return cls(data.mean() if len(data) else math.nan, data.std(ddof=1) if len(data) > 1 else math.nan, len(data))


def welch_interval(a: Sample, b: Sample, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(a.mean − b.mean, low, high, min(n)) of Welch's t interval for two independent groups (unequal variances,
    Welch–Satterthwaite degrees of freedom); low = high = NaN when either group has fewer than 2."""
    n = min(a.n, b.n)
    diff = a.mean - b.mean
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    if n < 2:
        return diff, math.nan, math.nan, n
    low, high = satterthwaite_interval(diff, [(g.sd**2 / g.n, g.n - 1) for g in (a, b)], confidence)
    return diff, low, high, n


def satterthwaite_interval(
    estimate: float, parts: Sequence[tuple[float, int]], confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The t interval of ``estimate``, a sum of independent terms, each given as (the variance it contributes, its
    degrees of freedom): standard error the root of their sum, Welch–Satterthwaite degrees of freedom. NaN ends when
    a variance is unknown (NaN) or a term has no degrees of freedom."""
    if any(math.isnan(v) or (v > 0 and d < 1) for v, d in parts):
        return math.nan, math.nan
    variance = sum(v for v, _ in parts)
    if variance == 0:
        return estimate, estimate
    dof = variance**2 / sum(v**2 / d for v, d in parts if v > 0)
    half = stats.t.ppf((1 + confidence) / 2, dof) * math.sqrt(variance)
    return estimate - half, estimate + half


def decide(low: float, high: float, n: int, side: str, threshold: float = 0.0) -> str:
    """The verdict for a claim that the effect is ``side`` ("above", "below" or "within" ±threshold)."""
    if n < 2 or pd.isna(low) or pd.isna(high):
        return INCONCLUSIVE
    if side == "above":
        return HOLDS if low > threshold else FAILS if high < threshold else INCONCLUSIVE
    if side == "below":
        return HOLDS if high < threshold else FAILS if low > threshold else INCONCLUSIVE
    if side == "within":
        inside = -threshold < low and high < threshold
        return HOLDS if inside else FAILS if low > threshold or high < -threshold else INCONCLUSIVE
    raise ValueError(f"side must be above, below or within, got {side!r}")


def distance_to_decision(effect: float, side: str, threshold: float = 0.0) -> float:
    """How far ``effect`` lies from the nearest bound an interval around it must clear to decide the claim."""
    return abs(abs(effect) - threshold) if side == "within" else abs(effect - threshold)


def seeds_to_decide(half_width: Callable[[int], float], distance: float, limit: int = MAX_SEEDS) -> float:
    """The fewest seeds n ≥ 2 whose interval ``half_width(n)`` is below ``distance``; inf beyond ``limit`` (and for
    an effect on the bound itself, which no number of seeds decides)."""
    return float(next((n for n in range(2, limit + 1) if half_width(n) < distance), math.inf))


def interval_result(diffs: Sequence[float], side: str, threshold: float = 0.0, note: str = "") -> Result:
    mean, low, high, n = t_interval(diffs)
    if n < 2:
        note = "; ".join(filter(None, [note, f"n = {n} seed(s) with both values: an interval needs 2"]))
    verdict = decide(low, high, n, side, threshold)
    projection = math.nan
    if verdict == INCONCLUSIVE and n >= 2:
        sd = Sample.of(diffs).sd
        projection = seeds_to_decide(lambda k: t_half_width(sd, k), distance_to_decision(mean, side, threshold))
    return Result(None if n == 0 else mean, low, high, n, verdict, note=note, seeds_to_decide=projection)


def missing(note: str) -> Result:
    return Result(None, None, None, 0, INCONCLUSIVE, note=note)


# ------------------------------------------------------------------------------------------------ evidence
def by_seed(trials: pd.DataFrame, column: str, **where: Any) -> pd.Series:
    """``column`` per seed among the rows matching ``where`` (the latest trial of a seed wins)."""
    rows = trials
    for key, value in where.items():
        rows = rows[rows[key] == value]
    rows = rows.sort_values("trial") if "trial" in rows else rows
    return rows.dropna(subset=[column]).drop_duplicates("seed", keep="last").set_index("seed")[column]


def paired(a: pd.Series, b: pd.Series) -> list[float]:
    """a − b for every seed that has both."""
    both = a.index.intersection(b.index)
    return [float(a[s] - b[s]) for s in sorted(both)]


def _absent(trials: pd.DataFrame, architectures: Sequence[str]) -> list[str]:
    present = set(trials["architecture"].dropna())
    return [a for a in architectures if a not in present]


# ------------------------------------------------------------------------------------------------ tests
def _table1(ev: Evidence, architectures: Sequence[str]) -> pd.DataFrame | Result:
    """Table 1's trials with ``architectures`` in them, or the inconclusive result that says what is missing."""
    found = ev.first("trials", TABLE1)
    if found is None:
        return missing(ev.missing(TABLE1))
    _, trials = found
    absent = _absent(trials, architectures)
    if absent:
        return missing(f"missing: architecture {', '.join(absent)} in the Table 1 study")
    return trials


def runs_of_configuration(ev: Evidence, rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``rows`` (trials of one configuration) with the seeds they lack from every other study's trials of the same
    configuration (seed excluded, :func:`analysis.tables.seedless`), e.g. a diagnosis that ran Table 1's TSN with
    more seeds; a seed of ``rows`` keeps its own run. Also the experiments that added seeds."""
    if "config" not in rows or rows["config"].isna().all():
        return rows, []
    families = {seedless(c, h) for c, h in zip(rows["config"], rows["config_hash"])}
    pooled, added = [rows], []
    for experiment, trials in ev.trials.items():
        if "config" not in trials:
            continue
        same = trials[[seedless(c, h) in families for c, h in zip(trials["config"], trials["config_hash"])]]
        new = same[~same["seed"].isin(pd.concat(pooled)["seed"])].dropna(subset=["delta_m"])
        if len(new):
            pooled.append(new.sort_values("trial").drop_duplicates("seed", keep="last"))
            added.append(experiment)
    return pd.concat(pooled, ignore_index=True), added


def tsn_near_single_task(claim: Claim, ev: Evidence) -> Result:
    """C1.1: TSN's Δm (against the single-task reference) below ``margin`` points, by Welch's interval over TSN's
    seeds (Table 1's, and those other studies ran of the same configuration: :func:`runs_of_configuration`) and the
    reference's (:func:`reference_sample`)."""
    trials = _table1(ev, ("tsn", "single_task"))
    if isinstance(trials, Result):
        return trials
    table1_tsn = trials[trials["architecture"] == "tsn"]
    runs, added = runs_of_configuration(ev, table1_tsn)
    tsn = Sample.of(by_seed(runs, "delta_m").tolist())
    reference = reference_sample(table1_tsn)
    effect, low, high, n = welch_interval(tsn, reference)
    note = f"single-task reference: {reference.n} seed(s), sd {reference.sd:.2f}"
    if added:
        note += f"; TSN seeds also from {', '.join(added)} (the same configuration)"
    if n < 2:
        note += f"; an interval needs 2 TSN seeds ({tsn.n}) and 2 single-task seeds ({reference.n})"
    verdict = decide(low, high, n, "below", claim.params["margin"])
    projection = math.nan
    if verdict == INCONCLUSIVE and n >= 2:  # k seeds of TSN and of the reference (at least the reference's own)

        def half_width(k: int) -> float:
            grown = Sample(reference.mean, reference.sd, max(k, reference.n))
            _, _, high_k, _ = welch_interval(Sample(effect, tsn.sd, k), grown)
            return high_k - effect

        projection = seeds_to_decide(half_width, distance_to_decision(effect, "below", claim.params["margin"]))
    return Result(None if n == 0 else effect, low, high, n, verdict, WELCH, note, projection)


def tsn_parameter_share(claim: Claim, ev: Evidence) -> Result:
    """C1.2: TSN's parameters at most ``max_param_ratio`` of single-task's (exact: nothing is sampled)."""
    trials = _table1(ev, ("tsn", "single_task"))
    if isinstance(trials, Result):
        return trials
    counts = {arch: by_seed(trials, "n_params", architecture=arch).median() for arch in ("tsn", "single_task")}
    ratio = counts["tsn"] / counts["single_task"]
    verdict = HOLDS if ratio <= claim.params["max_param_ratio"] else FAILS
    note = f"TSN / single-task = {ratio:.3f}: {counts['tsn']:,.0f} / {counts['single_task']:,.0f} parameters"
    return Result(ratio, ratio, ratio, 1, verdict, EXACT, note)


def reference_sample(rows: pd.DataFrame) -> Sample:
    """The single-task reference of ``rows`` as a group of seeds: each seed's Δm against the seed mean has mean 0
    (Δm is linear in the metrics it compares) and the reference's spread (:func:`analysis.tables.references`)."""
    rows = rows.dropna(subset=["delta_m"])
    if rows.empty:
        return Sample(math.nan, math.nan, 0)
    last = rows.sort_values("trial").iloc[-1] if "trial" in rows else rows.iloc[-1]
    return Sample(0.0, float(last["reference_spread"]), int(last["reference_seeds"]))


def delta_m_order(claim: Claim, ev: Evidence) -> Result:
    """Δm(worse) − Δm(better) per seed: above 0 (``side`` above) or within ±``margin`` (``side`` within)."""
    better, worse = claim.params["better"], claim.params["worse"]
    trials = _table1(ev, (better, worse))
    if isinstance(trials, Result):
        return trials
    diffs = paired(by_seed(trials, "delta_m", architecture=worse), by_seed(trials, "delta_m", architecture=better))
    return interval_result(diffs, claim.params.get("side", "above"), claim.params.get("margin", 0.0))


def spread_over_d(trials: pd.DataFrame, encoding: str, min_d: int) -> pd.Series:
    """Per seed: the sample standard deviation of Δm over the dimensions d ≥ ``min_d`` of ``encoding``."""
    rows = trials[(trials["model.encoding"] == encoding) & (trials["model.embedding_dim"] >= min_d)]
    rows = rows.dropna(subset=["delta_m"])
    spread = rows.groupby("seed")["delta_m"].agg(lambda v: v.std(ddof=1) if len(v) >= 2 else math.nan)
    return spread.dropna()


def orthogonal_steadier(claim: Claim, ev: Evidence) -> Result:
    """C3: per seed, sd over d ≥ ``min_d`` of Gaussian Δm minus that of orthogonal Δm; above 0."""
    found = ev.first("trials", EMBEDDING)
    if found is None:
        return missing(ev.missing(EMBEDDING))
    _, trials = found
    min_d = claim.params["min_d"]
    spreads = {e: spread_over_d(trials, e, min_d) for e in ("orthogonal", "gaussian")}
    empty = [e for e, s in spreads.items() if s.empty]
    if empty:
        return missing(f"missing: {', '.join(empty)} runs at two or more d ≥ {min_d} of one seed")
    return interval_result(paired(spreads["gaussian"], spreads["orthogonal"]), "above")


def epochs_to_fraction(history: pd.DataFrame, higher: Mapping[str, bool], fraction: float) -> pd.Series:
    """Per trial: the first epoch at which each task's validation metric reached ``fraction`` of its final value
    (higher-is-better: ≥ fraction × final; lower-is-better: ≤ final / fraction), averaged over the tasks."""
    out = {}
    for (trial, task), rows in history.dropna(subset=["value"]).groupby(["trial", "task"]):
        rows = rows.sort_values("epoch")
        final = rows["value"].iloc[-1]
        reached = rows["value"] >= fraction * final if higher.get(task, True) else rows["value"] <= final / fraction
        out.setdefault(trial, []).append(float(rows.loc[reached, "epoch"].iloc[0]))
    return pd.Series({trial: sum(v) / len(v) for trial, v in out.items()}, dtype=float)


def converges_faster(claim: Claim, ev: Evidence) -> Result:
    """C4: per seed, epochs-to-``fraction`` of ``other`` minus TSN's; above 0."""
    found = ev.first("history", CONVERGENCE)
    if found is None:
        return missing(ev.missing(CONVERGENCE))
    name, history = found
    history = history[history["state"] == "COMPLETE"] if "state" in history else history
    other = claim.params["other"]
    absent = _absent(history, ("tsn", other))
    if absent:
        return missing(f"missing: per-epoch history of {', '.join(absent)} in the {name} study")
    epochs = epochs_to_fraction(history, ev.higher_is_better, claim.params["fraction"])
    trials = history.drop_duplicates("trial")[["trial", "architecture", "seed"]].assign(
        epochs=lambda f: f["trial"].map(epochs)
    )
    diffs = paired(by_seed(trials, "epochs", architecture=other), by_seed(trials, "epochs", architecture="tsn"))
    return interval_result(diffs, "above", note=f"from the {name} study")


def tsn_flat_in_t(claim: Claim, ev: Evidence) -> Result:
    """C5: max − min of TSN's parameter count over T (exact: counted, not sampled)."""
    if ev.scaling_params is None or "tsn" not in ev.scaling_params.index:
        return missing(f"missing: the scaling table scaling-params-{ev.dataset}-{ev.budget}")
    counts = ev.scaling_params.loc["tsn"].astype(float)
    change = float(counts.max() - counts.min())
    note = f"T = {counts.index.min()}…{counts.index.max()}: {counts.min():,.0f}–{counts.max():,.0f} parameters"
    return Result(change, change, change, len(counts), HOLDS if change == 0 else FAILS, EXACT, note)


def all_of(claim: Claim, results: Mapping[str, Result]) -> Result:
    """A claim made of parts: holds when every part holds, fails when any fails, else inconclusive. Its n is the
    fewest seeds of a sampled part (an exact part's n counts no seeds)."""
    parts = [results[p] for p in claim.parts]
    verdicts = [part.verdict for part in parts]
    verdict = FAILS if FAILS in verdicts else HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE
    sampled = [part.n for part in parts if part.interval != EXACT] or [part.n for part in parts]
    return Result(None, None, None, min(sampled), verdict, "–", f"from {', '.join(claim.parts)}")


# ------------------------------------------------------------------------------------------------ the claims
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "C1.1",
        "TSN's Δm is below {margin} points (single-task: 0; paper: 0.30)",
        tsn_near_single_task,
        {"margin": 2.0},
    ),
    Claim(
        "C1.2",
        "TSN has ≤ {max_param_ratio} of single-task's parameters (effect: the ratio; paper: 0.21, 18.3M vs 88.7M)",
        tsn_parameter_share,
        {"max_param_ratio": 0.25},
    ),
    Claim("C1", "TSN is as good as single-task at about 1/5 of its parameters", parts=("C1.1", "C1.2")),
    Claim(
        "C2.1",
        "Δm: TSN < task-specific IN (effect: Δm(task_in) − Δm(tsn))",
        delta_m_order,
        {"better": "tsn", "worse": "task_in"},
    ),
    Claim(
        "C2.2",
        "Δm: task-specific IN < task-specific BN (effect: Δm(task_bn) − Δm(task_in))",
        delta_m_order,
        {"better": "task_in", "worse": "task_bn"},
    ),
    Claim(
        "C2.3",
        "Δm: task-specific BN ≈ multi-decoder, within ±{margin} points (effect: Δm(multi_decoder) − Δm(task_bn))",
        delta_m_order,
        {"better": "task_bn", "worse": "multi_decoder", "side": "within", "margin": 1.0},
    ),
    Claim("C2", "Δm order TSN < task-specific IN < task-specific BN ≈ multi-decoder", parts=("C2.1", "C2.2", "C2.3")),
    Claim(
        "C3",
        "orthogonal codes vary less across d ≥ {min_d} than Gaussian codes (effect: sd over d of Δm, "
        "Gaussian − orthogonal)",
        orthogonal_steadier,
        {"min_d": 50},
    ),
    Claim(
        "C4.1",
        "TSN converges faster than task-specific IN (effect: epochs to {fraction:.0%} of the final "
        "validation metric, task_in − tsn)",
        converges_faster,
        {"other": "task_in", "fraction": 0.95},
    ),
    Claim(
        "C4.2",
        "TSN converges faster than task-specific BN (effect: epochs to {fraction:.0%} of the final "
        "validation metric, task_bn − tsn)",
        converges_faster,
        {"other": "task_bn", "fraction": 0.95},
    ),
    Claim("C4", "TSN converges faster than task-specific IN and BN", parts=("C4.1", "C4.2")),
    Claim("C5", "TSN's parameter count is flat in the number of tasks T (effect: max − min over T)", tsn_flat_in_t),
)


def evaluate(evidence: Evidence, claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim: claim, statement, effect, ci_low, ci_high, n, interval, verdict, seeds_to_decide, note."""
    results: dict[str, Result] = {}
    for claim in claims:
        results[claim.id] = all_of(claim, results) if claim.parts else claim.test(claim, evidence)
    rows = [
        {
            "claim": c.id,
            "statement": c.statement(),
            "effect": results[c.id].effect,
            "ci_low": results[c.id].low,
            "ci_high": results[c.id].high,
            "n": results[c.id].n,
            "interval": results[c.id].interval,
            "verdict": results[c.id].verdict,
            "seeds_to_decide": results[c.id].seeds_to_decide,
            "note": results[c.id].note,
        }
        for c in claims
    ]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ output
def _number(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:+.2f}"


def _seeds(value: float) -> str:
    return "–" if pd.isna(value) else f"> {MAX_SEEDS}" if math.isinf(value) else f"{value:.0f}"


def to_markdown(frame: pd.DataFrame, dataset: str, budget: str) -> str:
    lines = [
        f"**The paper's claims, {dataset}, {budget} budget: verdict from the 95 % interval ({INTERVAL}, or as "
        "named; exact where nothing is sampled). Seeds to decide: for an inconclusive claim, the seeds at which an "
        "interval of today's mean and sd would decide it (a projection, not a promise)**",
        "",
        "| claim | statement | effect | 95 % CI | n | verdict | seeds to decide | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in frame.itertuples():
        ci = "–" if pd.isna(row.ci_low) else f"[{_number(row.ci_low)}, {_number(row.ci_high)}] ({row.interval})"
        lines.append(
            f"| {row.claim} | {row.statement} | {_number(row.effect)} | {ci} | {row.n} | **{row.verdict}** "
            f"| {_seeds(row.seeds_to_decide)} | {row.note} |"
        )
    return "\n".join(lines) + "\n"


def write_claims(frame: pd.DataFrame, out_dir: str | Path, dataset: str, budget: str) -> dict[str, Path]:
    """``claims-{dataset}-{budget}.md`` and ``.csv`` under ``out_dir``, written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"md": to_markdown(frame, dataset, budget), "csv": frame.to_csv(index=False)}
    paths = {}
    for ext, text in texts.items():
        paths[ext] = out / f"claims-{dataset}-{budget}.{ext}"
        atomic_write(paths[ext], lambda tmp, t=text: tmp.write_text(t))
    return paths
