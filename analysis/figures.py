"""The paper's figures from stored runs and checkpoints: PNG + PDF + a sidecar ``.md`` caption each, one style."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.tables import Table, delta_m_of, sort_key  # noqa: E402
from tsn.atomic import atomic_write  # noqa: E402
from tsn.target_kinds import target_kind  # noqa: E402

CONVERGENCE_ARCHITECTURES = ("tsn", "task_in", "task_bn")
QUALITATIVE_ARCHITECTURES = ("tsn", "task_in")


def set_style() -> None:
    sns.set_theme(context="paper", style="whitegrid")


def save(fig: Any, out_dir: str | Path, name: str, caption: str) -> list[Path]:
    """``name.png``, ``name.pdf`` and the caption ``name.md`` under ``out_dir``; closes the figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf", out / f"{name}.md"]
    # Written atomically: a full disk or a crash leaves the previous figure intact.
    atomic_write(paths[0], lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png"))
    atomic_write(paths[1], lambda tmp: fig.savefig(tmp, bbox_inches="tight", format="pdf"))
    atomic_write(paths[2], lambda tmp: tmp.write_text(f"![{name}]({name}.png)\n\n{caption}\n"))
    plt.close(fig)
    return paths


# ------------------------------------------------------------------------------------------------ from tables
def scaling_figure(params: Table, out_dir: str | Path) -> list[Path]:
    """Parameters against the number of tasks T per architecture, log y."""
    set_style()
    long = params.mean.rename_axis("architecture").reset_index().melt("architecture", var_name="T", value_name="n")
    long["parameters (M)"] = long["n"] * 1e-6
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    sns.lineplot(long, x="T", y="parameters (M)", hue="architecture", style="architecture", markers=True, ax=ax)
    ax.set_yscale("log")
    caption = (
        f"Parameters (millions, log scale) against the number of tasks T for each architecture. "
        f"{params.title}. Counted on the meta device (no training). {' '.join(params.notes)}"
    )
    return save(fig, out_dir, params.name, caption)


def delta_m_vs_d_figure(trials: pd.DataFrame, out_dir: str | Path, name: str) -> list[Path]:
    """Δm (per seed vs the single-task reference) against d, one line per encoding; bars = sd over seeds."""
    set_style()
    data = trials.dropna(subset=["delta_m"]).rename(columns={"model.embedding_dim": "d", "model.encoding": "encoding"})
    order = sorted(data["encoding"].unique(), key=lambda v: sort_key("model.encoding", v))
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    sns.pointplot(
        data, x="d", y="delta_m", hue="encoding", hue_order=order, errorbar="sd", dodge=0.2, capsize=0.1, ax=ax
    )
    ax.set_ylabel("Δm % (astmt, lower is better)")
    ax.set_xlabel("embedding dimension d")
    seeds = data.groupby(["encoding", "d"]).size()
    caption = (
        f"Δm against the task-embedding dimension d per encoding ({name}). Points: mean over seeds; "
        f"error bars: one standard deviation (sd) over seeds (n = {seeds.min()}–{seeds.max()} per point). "
        "Δm computed per seed against the single-task reference (each task's metric averaged over the baseline's seeds)."
    )
    return save(fig, out_dir, f"{name}-delta-m-vs-d", caption)


def convergence_frame(
    history: pd.DataFrame, references: pd.DataFrame | None, higher: Mapping[str, bool]
) -> pd.DataFrame:
    """Long frame (architecture, seed, epoch, quantity, value): each task's metric and, given each trial's
    single-task reference (:func:`analysis.tables.references`, index = trial), Δm."""
    rows = history.rename(columns={"task": "quantity"})[["architecture", "seed", "trial", "epoch", "quantity", "value"]]
    if references is None:
        return rows
    wide = history.pivot_table(index=["trial", "architecture", "seed", "epoch"], columns="task", values="value")
    deltas = []
    for (trial, arch, seed, epoch), row in wide.iterrows():
        if trial in references.index and row.notna().all():
            base = references.loc[trial]
            value = delta_m_of(row, base, list(row.index), higher)
            deltas.append(
                {"architecture": arch, "seed": seed, "trial": trial, "epoch": epoch, "quantity": "Δm %", "value": value}
            )
    return pd.concat([pd.DataFrame(deltas), rows], ignore_index=True)


def convergence_figure(
    history: pd.DataFrame, references: pd.DataFrame | None, higher: Mapping[str, bool], out_dir: str | Path, name: str
) -> list[Path]:
    """Validation Δm and per-task primary metric per epoch, TSN vs task-specific INs/BNs, mean and sd band."""
    set_style()
    data = convergence_frame(history[history["architecture"].isin(CONVERGENCE_ARCHITECTURES)], references, higher)
    data["epoch"] = data["epoch"].astype(float)
    quantities = list(dict.fromkeys(data["quantity"]))
    cols = min(3, len(quantities))
    rows = -(-len(quantities) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    order = [a for a in CONVERGENCE_ARCHITECTURES if a in set(data["architecture"])]
    for ax, quantity in zip(axes.flat, quantities):
        sns.lineplot(
            data[data["quantity"] == quantity],
            x="epoch",
            y="value",
            hue="architecture",
            hue_order=order,
            errorbar="sd",
            ax=ax,
            legend=ax is axes.flat[0],
        )
        arrow = "↓" if quantity == "Δm %" or not higher.get(quantity, True) else "↑"
        ax.set_title(f"{quantity} {arrow}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(quantities) :]:
        ax.axis("off")
    fig.tight_layout()
    seeds = data.groupby("architecture")["seed"].nunique()
    caption = (
        f"Convergence ({name}): validation metrics per epoch for {', '.join(order)}; line = mean over seeds, "
        f"band = one standard deviation (seeds per architecture: {seeds.to_dict()}). Δm per epoch against "
        "the final single-task reference, each task's metric averaged over the baseline's seeds (astmt, lower is "
        "better)."
    )
    return save(fig, out_dir, f"{name}-convergence", caption)


def search_figure(
    trials: pd.DataFrame,
    space: Mapping[str, Mapping[str, Any]],
    order: Sequence[str],
    objective: str,
    out_dir: str | Path,
    name: str,
) -> list[Path]:
    """A search's objective against each searched key (log axis for a log range), one colour per stratum (column
    ``stratum``, in ``order``), each stratum's best trial starred."""
    set_style()
    keys = list(space)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys) + 1.4, 3.2), sharey=True, squeeze=False)
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
    best = trials.loc[trials.groupby("stratum")["objective"].idxmin()]
    for ax, key in zip(axes.flat, keys):
        sns.scatterplot(
            trials, x=key, y="objective", hue="stratum", hue_order=order, palette=palette, ax=ax, legend=False
        )
        ax.scatter(
            best[key], best["objective"], marker="*", s=160, c=[palette[s] for s in best["stratum"]], edgecolors="black"
        )
        if space[key].get("log"):
            ax.set_xscale("log")
        ax.set_xlabel(key)
    axes.flat[0].set_ylabel(f"{objective} (lower is better)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=palette[s], label=s) for s in order]
    axes.flat[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.tight_layout()
    counts = trials.groupby("stratum").size()
    caption = (
        f"Search ({name}): {objective} of every finished trial against each searched key"
        f"{' (log axis)' if any(space[k].get('log') for k in keys) else ''}, one colour per "
        f"{'/'.join(order)}; a star marks each one's best trial (trials: {counts.to_dict()})."
    )
    return save(fig, out_dir, f"{name}-lr", caption)


# ------------------------------------------------------------------------------------------------ checkpoints
def load_model(run_dir: str | Path) -> tuple[torch.nn.Module, Any, Any]:
    """The trained model of ``run_dir/checkpoint.pt`` in eval mode, with its RunConfig and task set."""
    from tsn.checkpoint import load_checkpoint
    from tsn.config import from_dict
    from tsn.models import build_model
    from tsn.tasks import dataset_tasks

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    cfg = from_dict(state["config"])
    tasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
    model = build_model(cfg.model, tasks)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, tasks


def embedding_similarity_figure(run_dir: str | Path, out_dir: str | Path, name: str) -> list[Path]:
    """Cosine similarity of the learned task embeddings l_τ, clustered (dendrogram) as in the paper."""
    set_style()
    model, cfg, tasks = load_model(run_dir)
    with torch.no_grad():
        emb = model.task_embeddings()
    if emb is None:
        raise ValueError(f"{run_dir}: architecture {cfg.model.architecture!r} has no task embeddings")
    unit = torch.nn.functional.normalize(emb.float(), dim=1)
    sim = pd.DataFrame((unit @ unit.T).numpy(), index=tasks.names, columns=tasks.names)
    grid = sns.clustermap(
        sim, method="average", metric="cosine", cmap="vlag", vmin=-1, vmax=1, annot=True, fmt=".2f", figsize=(4.5, 4.5)
    )
    caption = (
        f"Cosine similarity of the learned task embeddings l_τ = C(v_τ) of a trained TSN ({name}; "
        f"{cfg.model.encoding} codes, d = {cfg.model.embedding_dim}, seed {cfg.train.seed}), rows and columns "
        "ordered by average-linkage clustering (dendrogram). Paper, PASCAL: parts and semseg merge first, "
        f"then saliency, then edge; normals is the outlier. Checkpoint: {Path(run_dir) / 'checkpoint.pt'}."
    )
    return save(grid.figure, out_dir, f"{name}-embedding-similarity", caption)


def qualitative_figure(run_dirs: Mapping[str, str | Path], out_dir: str | Path, name: str, n: int = 3) -> list[Path]:
    """Per sample and task: input, ground truth and each model's prediction on the first ``n`` validation images."""
    from tsn.data import build_dataset
    from tsn.data.preview import show
    from tsn.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    set_style()
    models = {label: load_model(d) for label, d in run_dirs.items()}
    _, cfg, tasks = next(iter(models.values()))
    ds = build_dataset(
        cfg.data.dataset,
        "val",
        list(tasks.names),
        cfg.data.image_size,
        root=cfg.data.root,
        seed=cfg.data.data_seed,
        num_samples=cfg.data.val_samples,
    )
    n = min(n, len(ds))
    labels = ["ground truth", *models]
    fig, axes = plt.subplots(
        n * len(labels),
        len(tasks.tasks) + 1,
        squeeze=False,
        figsize=(1.5 * (len(tasks.tasks) + 1), 1.5 * n * len(labels)),
    )
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    for i in range(n):
        sample = ds[i]
        with torch.no_grad():
            outputs = {
                label: m.forward_tasks(sample["image"][None], list(tasks.names)) for label, (m, _, _) in models.items()
            }
        for j, label in enumerate(labels):
            row = i * len(labels) + j
            axes[row, 0].imshow((sample["image"] * std + mean).permute(1, 2, 0).clamp(0, 1).numpy())
            axes[row, 0].set_ylabel(label, fontsize=7)
            for col, spec in enumerate(tasks.tasks, start=1):
                target = (
                    sample["targets"][spec.name]
                    if label == "ground truth"
                    else target_kind(spec.target).decode(outputs[label][spec.name][0])
                )
                show(axes[row, col], spec.target, target)
    for col, title in enumerate(["input", *tasks.names]):
        axes[0, col].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.tight_layout()
    caption = (
        f"Qualitative results ({name}) on the first {n} validation images of {cfg.data.dataset}: per image, "
        f"rows are {', '.join(labels)}; columns the input and each task. Checkpoints: "
        + "; ".join(f"{k}: {Path(v) / 'checkpoint.pt'}" for k, v in run_dirs.items())
        + "."
    )
    return save(fig, out_dir, f"{name}-qualitative", caption)
