"""The terms of the variational bound against t (Ho et al. 2020, eq. 5): L_0 (the decoder),
L_t = KL(q(x_t | x_{t+1}, x_0) || p(x_t | x_{t+1})) for t = 1, ..., T-1, and L_T (the prior),
in bits/dim, averaged over digits of the test split.

Two models: the exact eps-predictor of a Gaussian with the train split's per-pixel moments
(``jaxdiff.analytic.gaussian_eps_fn``: the best any model can do if the data were that
Gaussian), and -- with ``--workdir`` -- a trained run's EMA model.

Writes ``bound_terms.png`` (log scale) and ``bound_terms.csv`` (model, t, mean L_t, its
standard error over the examples) into ``--out``.

Usage::

    python experiments/bound_terms.py [--workdir runs/digits_ddpm] [--max_examples 128] [--out experiments/out]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import jax
import matplotlib
import numpy as np

from jaxdiff import analytic, data, evaluate, schedules, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def gaussian_model(schedule):
    """The optimal eps-predictor for N(mean, var) with the digits train split's moments."""
    x = np.asarray(data.to_model_range(np.stack([e["x"] for e in data.digits("train")])))
    return analytic.gaussian_eps_fn(schedule, x.mean(0), x.var(0) + 1e-2)


def terms(model_fn, schedule, images, rng, *, variance, prediction="eps", batch_size=128):
    """Per-example bound terms; returns (mean [T + 1], stderr [T + 1]) with L_T appended."""
    out = evaluate.nll_per_example(
        model_fn,
        schedule,
        images,
        rng,
        batch_size=batch_size,
        variance=variance,
        prediction=prediction,
    )
    values = np.concatenate([out["vb"], out["prior"][:, None]], axis=1).astype(np.float64)
    return values.mean(0), values.std(0, ddof=1) / np.sqrt(values.shape[0]), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="a trained DDPM run (optional)")
    parser.add_argument("--max_examples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = np.stack([e["x"] for e in data.digits("test")])[: args.max_examples]
    rng = jax.random.PRNGKey(args.seed)

    models = []
    if args.workdir:
        run = train.load_run(args.workdir)
        variance = run.config.diffusion.variance
        models.append(
            (f"trained (step {run.step}, {variance})", run.model_fn, run.schedule, variance)
        )
        schedule = run.schedule
    else:
        schedule = schedules.linear(1000)
    models.append(
        ("Gaussian, exact eps (fixed_large)", gaussian_model(schedule), schedule, "fixed_large")
    )

    fig, ax = plt.subplots(figsize=(6.5, 4))
    rows = []
    for name, model_fn, sched, variance in models:
        mean, stderr, per_example = terms(model_fn, sched, images, rng, variance=variance)
        total = per_example["total"]
        t = np.arange(mean.size)
        rows += [(name, int(i), float(m), float(s)) for i, m, s in zip(t, mean, stderr)]
        label = f"{name}: total {total.mean():.3f} bits/dim"
        ax.semilogy(t[1:-1], mean[1:-1], lw=1, label=label)
        ax.scatter([0, t[-1]], [mean[0], max(mean[-1], 1e-7)], s=12)
        print(
            f"{name}: total {total.mean():.4f} +- {total.std(ddof=1) / np.sqrt(total.size):.4f} bits/dim; "
            f"L_0 {mean[0]:.4f}, sum L_1..L_T-1 {mean[1:-1].sum():.4f}, L_T {mean[-1]:.2e}"
        )
    ax.set_xlabel("t (L_0 and L_T as dots)")
    ax.set_ylabel("L_t [bits/dim]")
    ax.set_title(
        f"terms of the bound, {images.shape[0]} test digits, T = {schedule.num_timesteps}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bound_terms.png", dpi=150)
    with open(out / "bound_terms.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "t", "L_t_bpd", "stderr_bpd"])
        writer.writerows(rows)
    print(f"wrote {out / 'bound_terms.png'} and {out / 'bound_terms.csv'}")


if __name__ == "__main__":
    main()
