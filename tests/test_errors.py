"""Issue 16: one error boundary for every entry point, hostile files, numeric domains, culprits named.

Each bad input runs the real entry point in-process (``main([...])``) and must end in ONE line on stderr naming the
flag, key, file or path at fault, with exit code 2 (bad input), 1 (a failed run) or 130 (an interrupt), and leave
no file behind. A few subprocess runs check the exit codes as a shell sees them.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_analysis import EMBEDDING, build_storage

from analysis import runs
from analysis.make_tables import main as tables_main
from sweeps.__main__ import main as sweeps_main
from tsn.__main__ import main as tsn_main
from tsn.checkpoint import save_checkpoint
from tsn.config import YAML_MAX_DEPTH, ConfigError, load_yaml, parse_yaml, resolve
from tsn.errors import entry_point, environment_fault
from tsn.models import build_model
from tsn.tasks import dataset_tasks

REPO = Path(__file__).resolve().parent.parent
GOOD_AXES = "axes:\n  scientific:\n    model.embedding_dim: [5, 10]\n"
LAUGHS = (
    "name: x\n"
    + "".join(f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9) if k else ', '.join('123456789')}]\n" for k in range(9))
    + GOOD_AXES
)
HUGE_GRID = "name: x\naxes:\n  scientific:\n" + "".join(
    f"    {key}: [{', '.join(map(str, range(40)))}]\n" for key in ("train.seed", "model.code_seed", "data.data_seed")
)


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------------- table of bad inputs
def _train(*extra: str) -> list[str]:
    return ["train", "--out", "{tmp}/run", "--budget", "smoke", *extra]


TSN_CASES = [
    (_train("train.lr_decoder=nan"), "train.lr_decoder must be finite"),
    (_train("train.lr_encoder=.inf"), "train.lr_encoder must be finite"),
    (_train("train.loss_weights={semseg: .nan}"), "train.loss_weights.semseg must be finite"),
    (_train("train.loss_weights={semseg: -1}"), "train.loss_weights.semseg must be in [0, 1e+06], got -1.0"),
    (_train("data.tasks=semseg", "train.loss_weights={semseg: 0}"), "every task (semseg) weighs 0"),
    (_train("train.threads=-1"), "train.threads must be in [0, 1024], got -1"),
    (_train("train.plateau_patience=-2"), "train.plateau_patience must be in [0, 100000], got -2"),
    (_train("train.eval_epochs=[0]"), "train.eval_epochs entry must be in [1, 100000], got 0"),
    (_train("train.seed=-1"), "train.seed must be in [0, 2.14748e+09], got -1"),
    (_train("train.weight_decay=1e300"), "train.weight_decay must be in [0, 1]"),
    (_train("model.embedding_dim=1000000"), "model.embedding_dim must be in [1, 4096], got 1000000"),
    (_train("data.num_workers=-1"), "data.num_workers must be in [0, 256], got -1"),
    (_train("data.image_size=4096", "train.batch_size=65536"), "lower train.batch_size or data.image_size"),
    (_train("train.epochs=[1, [2]]"), "train.epochs: expected an integer"),
    (
        _train("train.epochs=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"),
        "override train.epochs: refused, the YAML document is nested deeper than",
    ),
    (_train("train.epochs=["), "override train.epochs: YAML syntax error"),
    (_train("--config", "{tmp}/latin1.yaml"), "latin1.yaml: not UTF-8 text (byte 9"),
    (_train("--config", "{tmp}/laughs.yaml"), "laughs.yaml: refused, the YAML document is larger than"),
    (_train("--config", "{tmp}"), "(it is a folder)"),
    (_train("--baseline", "{tmp}/broken.json"), "--baseline {tmp}/broken.json: not a metrics.json"),
    (_train("--baseline", "{tmp}/list.json"), "--baseline {tmp}/list.json: no 'primary' metrics"),
    (["train", "--out", "{tmp}/afile", "--budget", "smoke"], "--out: {tmp}/afile is a file; give a folder path"),
    (["train", "--out", "{tmp}/afile/run", "--budget", "smoke"], "cannot be created: {tmp}/afile is a file"),
    (["train", "--budget", "smoke"], "the following arguments are required: --out"),
    (["train", "--out", "{tmp}/run", "--bogus"], "unrecognized arguments: --bogus"),
    (["params", "--n-fc", "-1"], "model.n_fc must be in [0, 64], got -1"),
    (["params", "--decoder-width", "inf"], "model.decoder_width must be finite"),
    (["params", "--image-size", "-32"], "argument --image-size: must be in [0, 4096], got -32"),
    (["params", "--tasks-range", "1-99999999999"], "argument --tasks-range"),
    (["data", "preview", "--out", "{tmp}/p.png", "--n", "0"], "argument --n: must be in [1, 1000], got 0"),
    (["data", "preview", "--out", "{tmp}/p.png", "--n", "-5"], "argument --n: must be in [1, 1000], got -5"),
    (["data", "preview", "--out", "{tmp}", "--n", "1"], "--out: {tmp} is a folder; give a file path"),
    (["eval", "{tmp}/missing.pt"], "checkpoint not found: {tmp}/missing.pt"),
    (
        ["eval", "{tmp}/foreign.pt"],
        "checkpoint {tmp}/foreign.pt: its weights do not fit the model its config builds"
        ": key 'extra.weight' is not in the model",
    ),
    (
        ["eval", "{tmp}/renamed.pt"],
        "checkpoint {tmp}/renamed.pt: its weights do not fit the model its config builds: key ",
    ),
    (["eval", "{tmp}/foreign.pt", "--json", "{tmp}"], "--json: {tmp} is a folder; give a file path"),
]

SWEEPS_CASES = [
    (["run", "{tmp}/laughs.yaml"], "laughs.yaml: refused, the YAML document is larger than 100000 values"),
    (["run", "{tmp}/grid.yaml"], "the grid has 64,000 points (40 x 40 x 40), more than the maximum 10,000"),
    (["run", "{tmp}/latin1.yaml"], "latin1.yaml: not UTF-8 text"),
    (["run", "{tmp}/missing.yaml"], "config file not found: {tmp}/missing.yaml"),
    (["run", "{tmp}/nan.yaml"], "train.lr_decoder must be finite"),
    (["run", "{tmp}/grid.yaml", "--n-trials", "0"], "argument --n-trials: must be in [1, 1e+06], got 0"),
    (["run", "{tmp}/grid.yaml", "--timeout", "nan"], "argument --timeout: must be in (0, 1e+08], got nan"),
    (["worker"], "the following arguments are required: --study"),
]

TABLES_CASES = [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--source", "nowhere"], "argument --source: invalid choice"),
]


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """Every hostile file the cases name, in ``tmp_path``."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1") + b"\n")
    (tmp_path / "laughs.yaml").write_text(LAUGHS)
    (tmp_path / "grid.yaml").write_text(HUGE_GRID)
    (tmp_path / "nan.yaml").write_text("name: x\nfixed: {train: {lr_decoder: .nan}}\n" + GOOD_AXES)
    (tmp_path / "broken.json").write_text('{"primary": ')
    (tmp_path / "list.json").write_text("[1, 2]")
    cfg = resolve("smoke", overrides=["model.pretrained=none"])
    model = build_model(cfg.model, dataset_tasks(cfg.data.dataset, cfg.data.tasks))
    weights = model.state_dict()
    save_checkpoint(
        tmp_path / "foreign.pt",
        {"model": {**weights, "extra.weight": torch.zeros(1)}, "config": cfg.to_dict(), "epoch": 1},
    )
    first = next(iter(weights))
    renamed = {("renamed." + k if k == first else k): v for k, v in weights.items()}
    save_checkpoint(tmp_path / "renamed.pt", {"model": renamed, "config": cfg.to_dict()})
    return tmp_path


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "main, argv, message",
    [(tsn_main, a, m) for a, m in TSN_CASES]
    + [(sweeps_main, a, m) for a, m in SWEEPS_CASES]
    + [(tables_main, a, m) for a, m in TABLES_CASES],
    ids=[f"tsn-{k}" for k in range(len(TSN_CASES))]
    + [f"sweeps-{k}" for k in range(len(SWEEPS_CASES))]
    + [f"tables-{k}" for k in range(len(TABLES_CASES))],
)
def test_bad_input_is_one_line_naming_the_culprit_exit_2_and_writes_nothing(
    main, argv, message, hostile: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(hostile)
    before = files(hostile)
    argv = [a.replace("{tmp}", str(hostile)) for a in argv]
    if main is sweeps_main:
        argv += [
            "--storage",
            f"sqlite:///{hostile}/studies.db",
            "--no-wandb",
            "--no-tables",
            "--runs-dir",
            str(hostile / "runs"),
        ]
    if main is tables_main:
        argv += ["--storage", f"sqlite:///{hostile}/studies.db", "--out", str(hostile / "reports")]
    assert main(argv) == 2
    assert message.replace("{tmp}", str(hostile)) in one_line_error(capsys)
    assert files(hostile) == before


# ------------------------------------------------------------------------------------------ the boundary
def _raising(err: BaseException):
    @entry_point
    def main(argv=None) -> int:
        raise err

    return main


@pytest.mark.parametrize(
    "err, code, message",
    [
        (
            RuntimeError("CUDA error: an illegal memory access\nmore"),
            1,
            "error: RuntimeError: CUDA error: an illegal memory access (the run failed; TSN_DEBUG=1 shows the traceback)",
        ),
        (MemoryError(), 1, "error: MemoryError: MemoryError (the run failed; TSN_DEBUG=1 shows the traceback)"),
        (
            PermissionError(errno.EACCES, "Permission denied", "/data/runs/x"),
            2,
            "error: /data/runs/x: permission denied; give a path this user can write (and read) (Permission denied)",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/mnt/ro/run"),
            2,
            "error: /mnt/ro/run: is on a read-only file system; give a writable path (Read-only file system)",
        ),
        (
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "/tmp/f/run"),
            2,
            "error: /tmp/f/run: a file is in the way where a folder is expected; give a folder path (Not a directory)",
        ),
        (OSError(errno.ENOSPC, "No space left on device", "/x"), 1, "error: OSError: [Errno 28] No space left"),
        (KeyError("semseg"), 1, "error: KeyError: semseg (the run failed"),
        (KeyboardInterrupt(), 130, "stopped: interrupted"),
    ],
)
def test_boundary_maps_each_class_to_its_exit_code_and_one_line(err, code, message, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TSN_DEBUG", raising=False)
    assert _raising(err)([]) == code
    out = capsys.readouterr().err
    assert out.startswith(message) and out.count("\n") == 1


def _lost_connection() -> BaseException:
    """What Optuna raises when PostgreSQL goes away mid-sweep: its own error, caused by SQLAlchemy's, caused by the
    driver's."""
    import optuna
    import sqlalchemy.exc

    driver = OSError("server closed the connection unexpectedly")  # stands for psycopg2.OperationalError
    try:
        try:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, driver)
        except sqlalchemy.exc.OperationalError as err:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err
    except optuna.exceptions.StorageInternalError as err:
        return err


@pytest.mark.parametrize(
    "err, fault",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
        (PermissionError(errno.EACCES, "Permission denied", "runs/x"), "permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "runs/x"), "read-only file system"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "runs/x/y"), "a file is in the way of a folder"),
        (_lost_connection(), "study storage lost"),
        (sqlite3.OperationalError("database is locked"), "study storage lost"),
        (RuntimeError("DataLoader worker died"), None),
        (KeyError("semseg_logits"), None),
        (ValueError("non-finite loss"), None),
        (torch.OutOfMemoryError("CUDA out of memory"), None),  # the configuration's, kept as its failure
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "data/x.png"), None),
    ],
    ids=lambda v: v if isinstance(v, str) or v is None else type(v).__name__,
)
def test_environment_faults_are_told_from_failures_of_the_work(err, fault) -> None:
    found = environment_fault(err)
    assert (found and found[0]) == fault
    assert found is None or found[1]  # always says what to do


def test_a_read_only_study_database_is_bad_input(capsys) -> None:
    try:
        try:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("(sqlite3.OperationalError) attempt to write a readonly database") from inner
    except RuntimeError as err:
        assert _raising(err)([]) == 2
    assert "read-only SQLite database" in one_line_error(capsys)


def test_tsn_debug_shows_the_traceback(capsys, monkeypatch) -> None:
    monkeypatch.setenv("TSN_DEBUG", "1")
    assert _raising(RuntimeError("boom"))([]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("error: RuntimeError")


@pytest.mark.parametrize(
    "command, message",
    [
        ([sys.executable, "-m", "tsn", "params", "--embedding-dim", "0"], "model.embedding_dim must be in [1, 4096]"),
        ([sys.executable, "-m", "sweeps", "run", "missing.yaml", "--no-wandb"], "config file not found: missing.yaml"),
        ([sys.executable, "analysis/make_tables.py", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_entry_points_exit_2_with_one_line_in_a_shell(command, message) -> None:
    """Each entry point through a real interpreter; the messages of every bad input are tested in-process."""
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------------- hostile YAML
@pytest.mark.timeout(20)
def test_billion_laughs_is_refused_fast() -> None:
    with pytest.raises(ConfigError, match="larger than 100000 values once its aliases are expanded"):
        parse_yaml(LAUGHS, "x.yaml")


@pytest.mark.timeout(60)
def test_sub_kilobyte_experiment_file_fails_fast(tmp_path: Path, capsys) -> None:
    """It used to make `sweeps run` hang and die of memory."""
    for text in (LAUGHS, HUGE_GRID):
        assert len(text.encode()) < 1024
        (tmp_path / "e.yaml").write_text(text)
        assert (
            sweeps_main(["run", str(tmp_path / "e.yaml"), "--no-wandb", "--storage", f"sqlite:///{tmp_path}/s.db"]) == 2
        )
        assert capsys.readouterr().err.count("\n") == 1
        assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: " + "[" * (YAML_MAX_DEPTH + 1) + "]" * (YAML_MAX_DEPTH + 1), "nested deeper than 32 levels"),
        ("a: &a [*a]", "recursive"),
        (
            "a: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: " + "[" * 14 + "*a" + "]" * 14,
            "nested deeper than 32 levels once its aliases are expanded",
        ),
        ("a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]", "more than 1000 alias references"),
    ],
)
def test_yaml_beyond_the_limits_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "f.yaml")
    assert str(err.value).startswith("f.yaml: refused, the YAML document is") and message in str(err.value)


def test_yaml_within_the_limits_keeps_anchors_and_merge_keys(tmp_path: Path) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text("base: &b {lr: 1.0e-3, epochs: 2}\nrun: {<<: *b, epochs: 3}\nlist: [*b, *b]\n")
    data = load_yaml(file)
    assert data["run"] == {"lr": 1e-3, "epochs": 3} and data["list"] == [{"lr": 1e-3, "epochs": 2}] * 2


def test_every_experiment_file_resolves_at_every_budget() -> None:
    from sweeps.experiment import budget_max_seeds, load_experiment

    for path in sorted((REPO / "experiments").glob("*.yaml")):
        if path.name == "budgets.yaml":
            continue
        experiment = load_experiment(path)
        for budget in ("smoke", "cpu", "paper"):
            dataset = "synthetic" if budget == "paper" else None  # the paper budget's real data needs data.root
            assert experiment.grid(budget, dataset, max_seeds=budget_max_seeds(budget)) or not experiment.train


# ----------------------------------------------------------------------------------------------- analysis
def test_a_damaged_analysis_cache_is_rebuilt_not_an_error(tmp_path: Path) -> None:
    storage = build_storage(tmp_path, resolve("smoke").to_dict())
    first = runs.load_study(EMBEDDING, storage, tmp_path / "cache")
    keys = tmp_path / "cache" / "optuna" / f"{EMBEDDING}.json"
    assert keys.is_file()
    for damage in ("{not json", json.dumps({"keys": [1, 2]}), "\udcff"):
        keys.write_text(damage, errors="surrogateescape")
        again = runs.load_study(EMBEDDING, storage, tmp_path / "cache")
        assert again.metrics.equals(first.metrics) and json.loads(keys.read_text())["keys"]
