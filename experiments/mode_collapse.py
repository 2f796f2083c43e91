"""Mode collapse where it can be counted: a GAN (with and without instance noise) and
diffusion on 2-D mixtures whose modes are known, at equal training budget (steps x batch).

Data: the ring of 8 Gaussians (``gaussian_mixture``: unit circle, std 0.05) and the 5 x 5 grid
(``gaussian_grid``: spacing 0.5, std 0.02). Models: ``configs/toy2d_gan.py`` (MLP G and D,
non-saturating loss) plain, with annealed Gaussian instance noise, and with annealed
long-tailed (Cauchy) instance noise; ``configs/toy2d_ddpm.py`` (MLP denoiser, 1000-step DDPM).
All train 4,000 steps of 256 points through ``jaxdiff.train.train``; several seeds each.

For each run, on 5,000 samples (:func:`jaxdiff.metrics.diversity.mode_statistics`): the modes
covered, the share of high-quality samples (within 3 std of a mode) and the KL divergence of
their mode histogram from the uniform one.

    python experiments/mode_collapse.py [--seeds 3] [--steps 4000] [--runs runs/mode_collapse]

writes ``experiments/figures/mode_collapse.{csv,md,png}`` (runs are kept under ``--runs`` and
resumed or reused on a rerun).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxdiff import cli, data, train  # noqa: E402
from jaxdiff.metrics import diversity  # noqa: E402
from _timing import timed_train  # noqa: E402

DATASETS = {"ring": ("gaussian_mixture", 0.05), "grid": ("gaussian_grid", 0.02)}
# name -> (config, overrides); the noise decays linearly to 0 over the whole run
VARIANTS = {
    "GAN": ("toy2d_gan", {}),
    "GAN + Gaussian noise": ("toy2d_gan", {"gan.instance_noise": 0.1}),
    "GAN + Cauchy noise": ("toy2d_gan", {"gan.instance_noise": 0.05, "gan.noise": "student_t"}),
    "diffusion": ("toy2d_ddpm", {}),
}
COLUMNS = ["data", "model", "seed", "modes_covered", "num_modes", "high_quality", "kl_uniform",
           "train_cpu_seconds"]


def mode_centres(dataset: str) -> np.ndarray:
    """The centres of the mixture's components: the mean of each label's training points."""
    source = data.load_source(dataset)
    x = np.stack([source[i]["x"] for i in range(len(source))])
    labels = np.array([source[i]["label"] for i in range(len(source))])
    return np.stack([x[labels == k].mean(0) for k in range(labels.max() + 1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--num", type=int, default=5000, help="samples per run")
    parser.add_argument("--runs", default="runs/mode_collapse")
    parser.add_argument("--out", default="experiments/figures")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows, shown = [], {}
    for data_name, (dataset, std) in DATASETS.items():
        centres = mode_centres(dataset)
        for model, (config_name, overrides) in VARIANTS.items():
            for seed in range(args.seeds):
                config = cli.load_config_file(config_name)
                cli.apply_overrides(config, {k: str(v) for k, v in overrides.items()})
                config.data.dataset = dataset
                config.seed = seed
                config.training.num_steps = args.steps
                config.sampling.num_samples = 0
                if config.get("gan") and config.gan.instance_noise:
                    config.gan.noise_anneal_steps = args.steps
                tag = model.lower().replace(" + ", "_").replace(" ", "_")
                workdir = Path(args.runs) / f"{data_name}_{tag}_s{seed}"
                seconds = timed_train(config, workdir)["cpu_seconds"]
                run = train.load_run(workdir)
                samples = np.asarray(run.sample(jax.random.PRNGKey(1000 + seed), args.num))
                stats = diversity.mode_statistics(samples, centres, std=std)
                rows.append(dict(data=data_name, model=model, seed=seed, **stats, train_cpu_seconds=seconds))
                print(json.dumps(rows[-1]), flush=True)
                if seed == 0:
                    shown[data_name, model] = samples

    with open(out / "mode_collapse.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| data | model | modes covered | high-quality share | KL to uniform (nats) | train CPU s |",
             "|---|---|---|---|---|---|"]
    for data_name in DATASETS:
        for model in VARIANTS:
            rs = [r for r in rows if r["data"] == data_name and r["model"] == model]
            cov = [r["modes_covered"] for r in rs]
            hq = np.array([r["high_quality"] for r in rs])
            kl = np.array([r["kl_uniform"] for r in rs])
            lines.append(
                f"| {data_name} | {model} | {np.mean(cov):.1f} / {rs[0]['num_modes']} "
                f"(min {min(cov)}) | {hq.mean():.3f} | {kl.mean():.3f} (max {kl.max():.3f}) | "
                f"{np.mean([r['train_cpu_seconds'] for r in rs]):.0f} |"
            )
    table = "\n".join(lines) + f"\n\nmeans over {args.seeds} seeds, {args.num} samples each\n"
    (out / "mode_collapse.md").write_text(table)
    print(table)

    fig, axes = plt.subplots(len(DATASETS), len(VARIANTS) + 1, figsize=(3 * (len(VARIANTS) + 1), 6.2))
    for i, (data_name, (dataset, _)) in enumerate(DATASETS.items()):
        source = data.load_source(dataset, split="test")
        real = np.stack([source[j]["x"] for j in range(args.num)])
        for j, (title, pts) in enumerate([("data", real)] + [(m, shown[data_name, m]) for m in VARIANTS]):
            ax = axes[i, j]
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.3)
            ax.set_xlim(-1.5, 1.5)
            ax.set_ylim(-1.5, 1.5)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=10)
    fig.suptitle(f"{args.steps} steps x 256 points each, seed 0")
    fig.tight_layout()
    fig.savefig(out / "mode_collapse.png", dpi=90)
    print(f"wrote {out / 'mode_collapse.csv'}, .md, .png")


if __name__ == "__main__":
    main()
