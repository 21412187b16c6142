"""Search sweeps: the ``search:`` section is validated in one line, sampling is repeatable, and the exactly-once
protocol holds per sampled configuration (a dead claim is retried with its own values, workers never overshoot).

Most tests replace the Trainer by :class:`BowlTrainer` (no training: its loss is a bowl in the learning rate), so
that the protocol runs in milliseconds; one trains real tiny runs at the smoke budget, W&B offline.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from test_sweeps import ONE_TASK
from wandb_offline import read_offline_run

from sweeps import records as R
from sweeps import runner
from sweeps.driver import DUPLICATE_OF, WORKER, Sweep
from sweeps.experiment import load_experiment, parse_experiment
from sweeps.search import SearchPlan, parse_slot, sample, slot_key, stratum_key
from sweeps.tracking import TrackingConfig
from tsn.config import ConfigError, RunConfig, config_hash, from_dict

TINY = ["data.train_samples=16", "data.val_samples=8", "train.batch_size=8", "train.progress=false"]
TINY += ["train.threads=1", "train.epochs=1"]
REPO = Path(__file__).resolve().parent.parent
DEAD = f"{os.uname().nodename}:{2**22 + 12345}"  # a pid that does not exist on this host
LR = {"low": 1.0e-4, "high": 1.0e-2, "log": True}


def search_file(tmp_path: Path, trials: int = 3, seed: int = 0, startup: int = 2, name: str = "lrs") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "axes:\n  scientific:\n    model.architecture: [tsn, task_bn]\n  nuisance:\n    train.seed: [1337]\n"
        "baseline: none\n"
        f"search:\n  trials: {trials}\n  seed: {seed}\n  startup_trials: {startup}\n"
        "  space:\n    train.lr_decoder: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
        "    train.lr_encoder: {low: 1.0e-5, high: 1.0e-2, log: true}\n"
    )
    return path


class BowlTrainer:
    """Stands in for tsn.train.Trainer: fits nothing; its mean validation loss is lowest at lr_decoder = 10^-2.5."""

    fitted: list[RunConfig] = []

    def __init__(self, cfg: RunConfig, run_dir: Path, callbacks=(), baseline=None) -> None:
        self.cfg = cfg

    def fit(self, resume: bool = False) -> dict[str, Any]:
        BowlTrainer.fitted.append(self.cfg)
        loss = (math.log10(self.cfg.train.lr_decoder) + 2.5) ** 2 + 0.1 * (self.cfg.model.architecture == "tsn")
        return {
            "metrics": {},
            "primary": {},
            "params": 1,
            "macs": 1,
            "wall_time_s": 0.0,
            "history": [],
            "evaluations": {},
            "mean_val_loss": loss,
        }


@pytest.fixture
def bowl(monkeypatch) -> list[RunConfig]:
    monkeypatch.setattr(BowlTrainer, "fitted", [])
    monkeypatch.setattr(runner, "Trainer", BowlTrainer)
    return BowlTrainer.fitted


def make_sweep(tmp_path: Path, experiment: Path, storage: str | None = None, budget: str = "smoke", **kw) -> Sweep:
    return Sweep(
        load_experiment(experiment),
        budget,
        storage or f"sqlite:///{tmp_path / 'studies.db'}",
        overrides=kw.pop("overrides", TINY),
        runs_dir=tmp_path / "runs",
        tracking=kw.pop("tracking", TrackingConfig(enabled=False)),
        log=lambda line: None,
        **kw,
    )


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE,))


def per_stratum(trials: list[optuna.trial.FrozenTrial]) -> dict[str, list[int]]:
    """stratum -> the slots its COMPLETE trials filled, sorted."""
    out: dict[str, list[int]] = {}
    for t in trials:
        stratum, k = parse_slot(t.user_attrs[R.SEARCH_SLOT])
        out.setdefault(stratum, []).append(k)
    return {s: sorted(ks) for s, ks in sorted(out.items())}


SAMPLED = ("train.lr_decoder", "train.lr_encoder")


def sampled(trial: optuna.trial.FrozenTrial) -> tuple[float, ...]:
    return tuple(trial.params[k] for k in SAMPLED)


# ------------------------------------------------------------------------------------------------ validation
BASE = {
    "name": "s",
    "axes": {"scientific": {"model.architecture": ["tsn"]}, "nuisance": {"train.seed": [1337]}},
    "baseline": "none",
}


def with_search(**changes: Any) -> dict[str, Any]:
    search = {"sampler": "tpe", "trials": 4, "seed": 0, "objective": "mean_val_loss", "space": {"train.lr_decoder": LR}}
    search.update(changes)
    return {**BASE, "search": search}


@pytest.mark.parametrize(
    "data, message",
    [
        (with_search(tries=3), "unknown key search.tries; valid: sampler, trials"),
        (with_search(sampler="random"), "search.sampler: 'random' is not valid; valid: tpe"),
        (with_search(objective="delta_m"), "search.objective: 'delta_m' is not valid; valid: mean_val_loss"),
        (with_search(trials=0), r"search.trials must be an integer in \[1, 10000\], got 0"),
        (with_search(trials=2.5), r"search.trials must be an integer in \[1, 10000\], got 2.5"),
        (with_search(seed=-1), r"search.seed must be an integer in \[0, 2147483647\], got -1"),
        (with_search(space={}), "search.space must map at least one dotted config key"),
        (
            with_search(space={"train.lr_decoder": {"low": 1e-2, "high": 1e-4}}),
            "search.space.train.lr_decoder: low must be below high, got low=0.01, high=0.0001",
        ),
        (
            with_search(space={"train.lr_decoder": {"low": 0, "high": 1e-2, "log": True}}),
            "search.space.train.lr_decoder: a log range needs low > 0, got low=0",
        ),
        (
            with_search(space={"train.lr_decoder": {"low": 1e-4, "high": 20.0}}),
            r"search.space.train.lr_decoder.high: train.lr_decoder must be in \[0, 10\], got 20.0",
        ),
        (
            with_search(space={"train.lr_decoder": {"low": 1e-4, "high": "fast"}}),
            "search.space.train.lr_decoder.high must be a finite number",
        ),
        (
            with_search(space={"train.lr_decoder": {"low": 1e-4, "high": 1e-2, "log": "yes"}}),
            "search.space.train.lr_decoder.log must be true or false",
        ),
        (
            with_search(space={"train.lr_decoder": {"low": 1e-4, "high": 1e-2, "step": 1}}),
            "search.space.train.lr_decoder: unknown key 'step'; valid: low, high, log",
        ),
        (
            with_search(space={"model.n_fc": {"low": 1.5, "high": 8}}),
            r"search.space.model.n_fc.low must be an integer \(model.n_fc is int\), got 1.5",
        ),
        (
            with_search(space={"model.encoding": LR}),
            "search.space.model.encoding: not a numeric config key; valid: .*train.lr_decoder",
        ),
        (with_search(space={"train.nope": LR}), "search.space.train.nope: not a numeric config key"),
        (with_search(space={"lr_decoder": LR}), "search.space.lr_decoder: not a numeric config key"),
        (
            {**with_search(), "axes": {"scientific": {"train.lr_decoder": [1e-3, 1e-2]}}},
            "search.space.train.lr_decoder is an axis too",
        ),
        ({**with_search(), "baseline": "single_task"}, "search needs baseline: none"),
        (
            {**with_search(), "axes": {"nuisance": {"train.seed": [1, 2]}}},
            "search: axis train.seed must have one value",
        ),
        ({**BASE, "search": [1, 2]}, "search must be a mapping with keys sampler, trials"),
        ({**BASE, "search": {"space": {"train.lr_decoder": LR}}}, "search.trials is missing"),
    ],
)
def test_a_bad_search_section_is_one_line_naming_the_file_and_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^lrs.yaml: {message}") as caught:
        parse_experiment(data, "lrs.yaml")
    assert "\n" not in str(caught.value)


def test_a_valid_search_section_is_parsed_with_its_defaults() -> None:
    data = with_search(space={"train.lr_decoder": {"low": "1e-4", "high": 1e-2, "log": True}, "model.n_fc": {}})
    data["search"]["space"]["model.n_fc"] = {"low": 2, "high": 8}
    del data["search"]["sampler"], data["search"]["objective"], data["search"]["seed"]
    search = parse_experiment(data, "lrs.yaml").search
    assert (search.sampler, search.objective, search.seed, search.startup_trials, search.trials) == (
        "tpe",
        "mean_val_loss",
        0,
        10,
        4,
    )
    lr, n_fc = search.space
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-4, 1e-2, True, False)  # YAML 1.1's "1e-4" string is a number
    assert (n_fc.low, n_fc.high, n_fc.log, n_fc.integer) == (2, 8, False, True)
    assert parse_experiment(BASE, "plain.yaml").search is None


def test_every_sampled_config_is_resolved_before_anything_trains(tmp_path: Path, bowl) -> None:
    path = tmp_path / "sizes.yaml"
    path.write_text(
        "name: sizes\naxes: {scientific: {model.architecture: [tsn]}}\nbaseline: none\n"
        "search: {trials: 2, space: {data.image_size: {low: 64, high: 100}}}\n"
    )
    with pytest.raises(
        ConfigError, match=r"sizes.yaml: data.image_size must be a multiple of 32 .*, got 100 \(grid point"
    ):
        make_sweep(tmp_path, path)
    with pytest.raises(ConfigError, match="the override 'train.lr_decoder=0.1' sets search.space.train.lr_decoder"):
        make_sweep(tmp_path, search_file(tmp_path), overrides=[*TINY, "train.lr_decoder=0.1"])
    with pytest.raises(ConfigError, match="the override 'lr_encoder=0.1' sets search.space.train.lr_encoder"):
        make_sweep(tmp_path, search_file(tmp_path), overrides=[*TINY, "lr_encoder=0.1"])
    assert bowl == []


# ------------------------------------------------------------------------------------------------ sampling
def test_sampling_is_a_function_of_the_seed_the_slot_and_the_finished_trials() -> None:
    search = parse_experiment(with_search(startup_trials=2), "s.yaml").search
    stratum = stratum_key({"model.architecture": "tsn", "train.seed": 1337})
    first = sample(search, stratum, 0, [])
    assert first == sample(search, stratum, 0, []) and 1e-4 <= first["train.lr_decoder"] <= 1e-2
    assert sample(search, stratum, 1, []) != first  # each slot draws afresh
    assert sample(search, "model.architecture=task_bn train.seed=1337", 0, []) != first  # strata draw apart
    other_seed = parse_experiment(with_search(seed=1), "s.yaml").search
    assert sample(other_seed, stratum, 0, []) != first
    dist = {"train.lr_decoder": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    history = [
        optuna.trial.create_trial(params={"train.lr_decoder": lr}, distributions=dist, value=loss)
        for lr, loss in ((1e-4, 3.0), (3e-3, 0.1), (1e-2, 2.0))
    ]
    modelled = sample(search, stratum, 3, history)  # past the startup trials: TPE models the finished ones
    assert modelled == sample(search, stratum, 3, history) and modelled != sample(search, stratum, 3, [])


def test_a_search_is_repeatable_for_its_seed(tmp_path: Path, bowl) -> None:
    def searched(folder: str) -> list[tuple]:
        (tmp_path / folder).mkdir()
        sweep = make_sweep(tmp_path / folder, search_file(tmp_path / folder, trials=3, startup=2), budget="cpu")
        assert sweep.run() == {"complete": 6}  # the third slot of each stratum is TPE's, fitted on the first two
        return [
            (t.user_attrs[R.SEARCH_SLOT], sampled(t)) for t in sorted(complete(sweep.study), key=lambda t: t.number)
        ]

    assert searched("a") == searched("b")


# ------------------------------------------------------------------------------------------------ exactly once
def test_a_search_trains_exactly_its_trials_per_stratum_and_stores_its_plan(tmp_path: Path, bowl) -> None:
    sweep = make_sweep(tmp_path, search_file(tmp_path, trials=3), budget="cpu")
    assert sweep.total == 6 and sweep.run() == {"complete": 6}
    trials = complete(sweep.study)
    assert per_stratum(trials) == {
        "model.architecture=task_bn train.seed=1337": [0, 1, 2],
        "model.architecture=tsn train.seed=1337": [0, 1, 2],
    }
    assert len({t.user_attrs[R.CONFIG_HASH] for t in trials}) == 6 == len(bowl)
    for trial in trials:
        cfg = sweep.plan.config(trial)
        assert trial.user_attrs[R.CONFIG_HASH] == config_hash(cfg) and from_dict(trial.user_attrs[R.CONFIG]) == cfg
        assert (cfg.train.lr_decoder, cfg.train.lr_encoder) == sampled(trial)
        assert cfg.model.architecture == trial.params["model.architecture"] == trial.user_attrs[R.ARCHITECTURE]
        assert trial.value == BowlTrainer(cfg, tmp_path).fit()["mean_val_loss"]  # the objective: mean_val_loss
    attrs = sweep.study.user_attrs
    assert attrs[R.GRID] == [{"model.architecture": a, "train.seed": 1337} for a in ("tsn", "task_bn")]
    assert attrs[R.SEARCH]["trials"] == 3 and attrs[R.SEARCH]["space"]["train.lr_decoder"] == {**LR, "integer": False}
    bowl.clear()
    assert make_sweep(tmp_path, search_file(tmp_path, trials=3), budget="cpu").run() == {"complete": 6}
    assert bowl == []  # finished: a rerun samples and trains nothing


def test_the_budget_caps_the_trials_per_stratum(tmp_path: Path, bowl) -> None:
    sweep = make_sweep(tmp_path, search_file(tmp_path, trials=5))  # smoke: sweep.max_search_trials = 2
    assert sweep.total == 4 and sweep.run() == {"complete": 4}
    assert sweep.study.user_attrs[R.SEARCH]["trials"] == 2


def test_a_dead_or_interrupted_claim_is_retried_with_the_same_sampled_values(tmp_path: Path, bowl) -> None:
    sweep = make_sweep(tmp_path, search_file(tmp_path, trials=2), budget="cpu")
    dead_slot, stopped_slot = list(sweep.plan.units)[:2]
    orphan = sweep.ledger.claim(sweep.plan.params(dead_slot, sweep.ledger), dead_slot)
    orphan.set_user_attr(WORKER, DEAD)  # its worker died mid-trial
    stopped = sweep.ledger.claim(sweep.plan.params(stopped_slot, sweep.ledger), stopped_slot)
    sweep.ledger.interrupted(stopped)  # Ctrl-C mid-trial
    assert sweep.run() == {"complete": 4}
    trials = sweep.study.get_trials()
    assert trials[orphan.number].state == trials[stopped.number].state == TrialState.FAIL
    done = {t.user_attrs[R.SEARCH_SLOT]: t for t in complete(sweep.study)}
    assert done[dead_slot].params == orphan.params and done[stopped_slot].params == stopped.params
    assert len(bowl) == 4 and per_stratum(list(done.values())) == {s: [0, 1] for s in sweep.plan.strata}


def test_two_workers_claiming_one_slot_train_one_sample(tmp_path: Path, bowl) -> None:
    experiment = search_file(tmp_path, trials=2)
    mine, theirs = make_sweep(tmp_path, experiment, budget="cpu"), make_sweep(tmp_path, experiment, budget="cpu")
    slot = next(iter(mine.plan.units))
    first = mine.ledger.claim(mine.plan.params(slot, mine.ledger), slot)
    # The other worker saw the slot pending at the same moment: it samples and enqueues its own values, in vain.
    assert theirs.ledger.claim(theirs.plan.params(slot, theirs.ledger), slot) is None
    (pruned,) = mine.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned.user_attrs[DUPLICATE_OF] == first.number and pruned.user_attrs[R.SEARCH_SLOT] == slot
    mine.ledger.complete(first, 1.0, {})
    assert theirs.run() == {"complete": 4} and mine.run() == {"complete": 4}
    assert per_stratum(complete(mine.study)) == {s: [0, 1] for s in mine.plan.strata} and len(bowl) == 3


def test_sequential_workers_on_one_storage_finish_the_count_and_no_more(tmp_path: Path, bowl) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first = make_sweep(tmp_path, search_file(tmp_path, trials=3), storage, budget="cpu")
    assert first.run(n_trials=4) == {"complete": 4, "pending": 2}
    worker = Sweep.from_storage(
        first.study_name,
        storage,
        runs_dir=tmp_path / "runs",
        log=lambda line: None,
        tracking=TrackingConfig(enabled=False),
    )
    assert isinstance(worker.plan, SearchPlan) and worker.run() == {"complete": 6}
    assert make_sweep(tmp_path, search_file(tmp_path, trials=3), storage, budget="cpu").run() == {"complete": 6}
    assert len(bowl) == 6 and len(complete(first.study)) == 6
    assert per_stratum(complete(first.study)) == {s: [0, 1, 2] for s in first.plan.strata}


def test_a_failed_sample_is_final_and_retry_failed_trains_the_same_values_again(tmp_path: Path, monkeypatch) -> None:
    class Failing(BowlTrainer):
        def fit(self, resume: bool = False) -> dict[str, Any]:
            if self.cfg.model.architecture == "tsn" and not retrying:
                raise FloatingPointError("non-finite loss (injected)")
            return super().fit(resume)

    retrying = False
    monkeypatch.setattr(BowlTrainer, "fitted", [])
    monkeypatch.setattr(runner, "Trainer", Failing)
    sweep = make_sweep(tmp_path, search_file(tmp_path, trials=2), budget="cpu")
    assert sweep.run() == {"complete": 2, "failed": 2}  # a failure fills its slot: no resampling
    failed = {t.user_attrs[R.SEARCH_SLOT]: t.params for t in sweep.study.get_trials(states=(TrialState.FAIL,))}
    retrying = True
    assert sweep.requeue_failed() == 2 and sweep.run() == {"complete": 4}
    done = {t.user_attrs[R.SEARCH_SLOT]: t.params for t in complete(sweep.study)}
    assert all(done[slot] == params for slot, params in failed.items())


# ------------------------------------------------------------------------------------------------ files
def test_lr_search_loads_and_resolves_at_the_cpu_and_smoke_budgets(tmp_path: Path) -> None:
    experiment = load_experiment(REPO / "experiments" / "lr_search.yaml")
    table_1 = load_experiment(REPO / "experiments" / "baselines.yaml")
    assert experiment.axes["model.architecture"] == table_1.axes["model.architecture"]
    assert experiment.axes["train.seed"] == [1337] and experiment.baseline == "none"
    assert experiment.search.objective == "mean_val_loss" and experiment.search.keys == SAMPLED
    for budget, trials in (("cpu", 12), ("smoke", 2)):
        points = experiment.grid(budget)
        plan = SearchPlan(experiment, points, budget, "synthetic")  # both ends of the space resolve
        assert len(plan.units) == 5 * trials and plan.trials == trials
        assert slot_key(stratum_key(points[0].params), trials - 1) in plan.units


def test_a_smoke_search_trains_real_runs_with_their_records_and_wandb_runs(tmp_path: Path) -> None:
    path = tmp_path / "lrs.yaml"
    path.write_text(
        "name: lrs\naxes: {scientific: {model.architecture: [tsn]}, nuisance: {train.seed: [1337]}}\n"
        "baseline: none\nsearch: {trials: 2, space: {train.lr_decoder: {low: 1.0e-4, high: 1.0e-2, log: true}}}\n"
    )
    tracking = TrackingConfig(enabled=True, mode="offline", dir=str(tmp_path / "runs"))
    sweep = make_sweep(tmp_path, path, tracking=tracking, overrides=[*TINY, ONE_TASK])
    assert sweep.run() == {"complete": 2}
    for trial in complete(sweep.study):
        attrs = trial.user_attrs
        for key in (R.METRICS, R.PRIMARY, R.HISTORY, R.CONFIG, R.CONFIG_HASH, R.WANDB_RUN_ID, R.RUN_DIR):
            assert attrs.get(key) is not None, key
        assert attrs[R.CONFIG]["train"]["lr_decoder"] == trial.params["train.lr_decoder"]
        assert (Path(attrs[R.RUN_DIR]) / "checkpoint.pt").is_file() and Path(attrs[R.RUN_DIR]).name == attrs[
            R.CONFIG_HASH
        ]
        (run_dir,) = (tmp_path / "runs" / "wandb").glob(f"offline-run-*-{attrs[R.WANDB_RUN_ID]}")
        logged = read_offline_run(run_dir)
        assert logged["run"]["group"] == "lrs-synthetic-smoke"
        assert logged["config"]["train"]["lr_decoder"] == trial.params["train.lr_decoder"]
        assert logged["summary"]["mean_val_loss"] == trial.value
