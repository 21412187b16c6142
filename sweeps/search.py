"""Search sweeps: an experiment file's ``search:`` section, run under the exactly-once protocol of grids.

The grid points of the experiment's axes are strata (e.g. one per architecture). Each stratum has ``trials`` slots
(``search.trials``, capped by the budget's ``sweep: {max_search_trials: N}``), and each slot is one sampled
configuration, trained once. The ledger (:class:`sweeps.ledger.Ledger`) identifies a trial by its slot
(``records.SEARCH_SLOT``) instead of its config hash, so a slot has everything a grid point has: of two claims one
trains and the other is pruned as a duplicate, a dead worker's trial is reaped and its slot is pending again, a
failure with a reason is final until ``retry --failed``. Workers together finish exactly ``trials`` slots per
stratum, however many share the storage.

A slot's configuration is fixed when the slot is first enqueued, and kept: a pending slot that was claimed before
(its worker died, or an interrupt stopped it) is enqueued again with that trial's parameters, never resampled, so the
retry resumes the same run folder (named by the config hash). A slot never claimed is sampled then: Optuna's
TPESampler fitted on the COMPLETE trials of its own stratum, seeded by (search seed, stratum, slot), so a sample
depends on nothing but the seed and the stratum's finished trials (one worker's search is repeatable) and strata do
not learn from each other. The sampled values join the stratum's point, resolved and validated like a grid point
(budget <- fixed <- point <- overrides), before the slot is enqueued.

Why not a PartialFixedSampler on the study itself: its TPE would model every stratum's trials together (one
architecture's learning rates steering another's), and it samples inside ``ask``, after the claim; here the sample
exists before the claim, and the ledger's claim decides who trains it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tsn.config import ConfigError, RunConfig, parse_override

from . import records as R
from .experiment import Experiment, GridPoint, Search
from .ledger import DUPLICATE_OF, WORKER, Ledger

SLOT_MARK = " #"


def stratum_key(params: Mapping[str, Any]) -> str:
    """A stratum's name: its point, ``axis=value`` in key order (``model.architecture=tsn train.seed=1337``)."""
    return " ".join(f"{axis}={params[axis]}" for axis in sorted(params))


def slot_key(stratum: str, k: int) -> str:
    return f"{stratum}{SLOT_MARK}{k}"


def parse_slot(key: str) -> tuple[str, int]:
    """``slot_key``'s inverse: (stratum, k)."""
    stratum, _, k = key.rpartition(SLOT_MARK)
    return stratum, int(k)


def slot_seed(seed: int, stratum: str, k: int) -> int:
    """The sampler's seed for slot ``k`` of ``stratum``: each slot draws afresh, repeatably."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{stratum}|{k}".encode()).digest()[:4], "big")


def distributions(search: Search) -> dict[str, BaseDistribution]:
    """The searched keys as Optuna distributions (integers for an int config field)."""
    return space_distributions({p.key: p.to_dict() for p in search.space})


def space_distributions(space: Mapping[str, Mapping[str, Any]]) -> dict[str, BaseDistribution]:
    """A search space as stored (``records.SEARCH``'s ``space``: key -> low, high, log, integer) as distributions."""
    return {
        key: IntDistribution(int(r["low"]), int(r["high"]), log=r["log"])
        if r.get("integer")
        else FloatDistribution(r["low"], r["high"], log=r["log"])
        for key, r in space.items()
    }


def contains(space: Mapping[str, BaseDistribution], params: Mapping[str, Any]) -> bool:
    """Whether ``params`` hold a value inside ``space`` for every key of it."""
    return all(key in params and dist._contains(dist.to_internal_repr(params[key])) for key, dist in space.items())


def sample(search: Search, stratum: str, k: int, history: Sequence[optuna.trial.FrozenTrial]) -> dict[str, int | float]:
    """Values of the searched keys for slot ``k`` of ``stratum``: TPE (seeded by :func:`slot_seed`) over
    ``history``, the stratum's COMPLETE trials (those that lack a searched key or lie outside the space, e.g. stored
    before the file changed, are left out)."""
    space = distributions(search)
    known = [
        optuna.trial.create_trial(params={key: t.params[key] for key in space}, distributions=space, value=t.value)
        for t in sorted(history, key=lambda t: t.number)
        if contains(space, t.params)
    ]
    sampler = optuna.samplers.TPESampler(
        seed=slot_seed(search.seed, stratum, k), n_startup_trials=search.startup_trials
    )
    scratch = optuna.create_study(direction="minimize", sampler=sampler)  # in memory, thrown away
    scratch.add_trials(known)
    return dict(scratch.ask(space).params)


class SearchPlan:
    """What a search sweep works through (:class:`sweeps.driver.Sweep`): the slots of every stratum, the parameters
    each is enqueued with, the config a claimed trial trains."""

    key = R.SEARCH_SLOT

    def __init__(
        self,
        experiment: Experiment,
        strata: Sequence[GridPoint],
        budget: str,
        dataset: str,
        overrides: Sequence[str] = (),
    ) -> None:
        assert experiment.search is not None
        self.experiment, self.search = experiment, experiment.search
        self.budget, self.dataset, self.overrides = budget, dataset, list(overrides)
        for text in self.overrides:
            section, name, _ = parse_override(text)
            if f"{section}.{name}" in self.search.keys:
                raise ConfigError(
                    f"{experiment.path}: the override {text!r} sets search.space.{section}.{name}, which the search "
                    "samples; leave it out"
                )
        self.trials = self.search.trials_at(budget)
        self.strata = {stratum_key(p.params): p for p in strata}
        # Slot 0 of every stratum before any slot 1: a search stopped early has covered every stratum alike.
        self.units: dict[str, str] = {slot_key(s, k): s for k in range(self.trials) for s in self.strata}
        self.distributions = {
            **{axis: CategoricalDistribution(values) for axis, values in experiment.axes.items()},
            **distributions(self.search),
        }
        for point in strata:  # every stratum at both ends of the space, before anything trains
            for end in ("low", "high"):
                self.resolve({**point.params, **{p.key: getattr(p, end) for p in self.search.space}})

    def describe(self) -> str:
        return f"{len(self.units)} trials ({len(self.strata)} grid points x {self.trials} sampled configurations)"

    def resolve(self, params: Mapping[str, Any]) -> RunConfig:
        return self.experiment.resolve(self.budget, self.dataset, params, self.overrides)

    def params(self, key: str, ledger: Ledger) -> dict[str, Any]:
        """What pending slot ``key`` is enqueued with: its last claimed trial's parameters, else a new sample."""
        trials = ledger.study.get_trials(deepcopy=False)
        claimed = [
            t for t in trials if ledger.key_of(t) == key and WORKER in t.user_attrs and DUPLICATE_OF not in t.user_attrs
        ]
        if claimed:
            return dict(max(claimed, key=lambda t: t.number).params)
        stratum, k = parse_slot(key)
        history = [
            t
            for t in trials
            if t.state == TrialState.COMPLETE and ledger.key_of(t) and parse_slot(ledger.key_of(t))[0] == stratum
        ]
        params = {**self.strata[stratum].params, **sample(self.search, stratum, k, history)}
        self.resolve(params)  # validated before it is enqueued
        return params

    def config(self, trial: optuna.Trial) -> RunConfig:
        return self.resolve(trial.params)

    def label(self, trial: optuna.Trial) -> str:
        stratum, k = parse_slot(trial.user_attrs[self.key])
        values = " ".join(f"{key.split('.')[-1]}={trial.params[key]:.3g}" for key in self.search.keys)
        return f"{self.strata[stratum].label()} #{k} {values}"

    def objective(self, summary: Mapping[str, Any]) -> float:
        return float(summary[self.search.objective])

    def study_attrs(self) -> dict[str, Any]:
        return {R.SEARCH: self.search.to_dict(self.budget)}
