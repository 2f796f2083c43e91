"""DDPM on a 2-D distribution: trains ``configs/toy2d_ddpm.py`` (or resumes it), draws samples
with the ancestral sampler, and writes the samples next to the data as one PNG, with the
sliced Wasserstein-1 distance of the samples to held-out data (and, for scale, that of the
training data to the same held-out data).

    python experiments/toy2d.py                              # swiss roll
    python experiments/toy2d.py --dataset gaussian_mixture [--out experiments/out]

writes ``OUT/toy2d_<dataset>.png`` and ``.json``; the run itself goes to ``runs/toy2d_<dataset>``
(rerunning resumes it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxdiff import cli, data, train  # noqa: E402


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, *, num_projections: int = 200, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two equally sized point clouds ``[N, D]``: the
    mean over random unit directions of the 1-D W1 distance of the projections (Rabin et al.
    2011), each computed exactly by sorting."""
    if a.shape != b.shape:
        raise ValueError(f"point clouds must have the same shape, got {a.shape} and {b.shape}")
    dirs = np.random.default_rng(seed).standard_normal((a.shape[1], num_projections))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
    return float(np.mean(np.abs(pa - pb)))


def points(dataset: str, split: str, num: int) -> np.ndarray:
    source = data.load_source(dataset, split=split)
    return np.stack([source[i]["x"] for i in range(num)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="swiss_roll", choices=["swiss_roll", "gaussian_mixture", "two_moons"])
    parser.add_argument("--workdir", default=None, help="default runs/toy2d_<dataset>")
    parser.add_argument("--out", default="experiments/out", help="output directory")
    parser.add_argument("--num", type=int, default=2000, help="samples to draw")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = cli.load_config_file("toy2d_ddpm")
    config.data.dataset = args.dataset
    workdir = Path(args.workdir or f"runs/toy2d_{args.dataset}")
    output = Path(args.out) / f"toy2d_{args.dataset}.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    train.train(config, workdir)

    run = train.load_run(workdir)
    sample = jax.jit(lambda v, rng: train.build_sampler(run.config, run.experiment)(v, rng, args.num))
    samples = np.asarray(sample(run.variables, jax.random.PRNGKey(args.seed)))
    train_pts, test_pts = points(args.dataset, "train", args.num), points(args.dataset, "test", args.num)
    metrics = {
        "dataset": args.dataset,
        "step": run.step,
        "num": args.num,
        "sliced_w1_samples_vs_test": sliced_wasserstein(samples, test_pts),
        "sliced_w1_train_vs_test": sliced_wasserstein(train_pts, test_pts),
    }

    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, pts, title in ((axes[0], train_pts, "data"), (axes[1], samples, f"DDPM samples (step {run.step})")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.suptitle(
        f"{args.dataset}: sliced W1 to held-out data {metrics['sliced_w1_samples_vs_test']:.3f} "
        f"(data itself: {metrics['sliced_w1_train_vs_test']:.3f})"
    )
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    output.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
