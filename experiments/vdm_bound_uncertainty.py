"""How uncertain is a VDM's bound? The per-(digit, draw) matrix of the continuous-time bound
(Kingma et al. 2021, eq. 11; one time and one noise per draw) of a trained digits VDM, for two
evaluation seeds, with bootstrap standard errors over digits and draws.

Each draw d evaluates the whole test split with the key ``fold_in(PRNGKey(seed), d)`` (the
times of one draw are stratified across the digits, ``jaxdiff.vdm.stratified_times``), so the
draws are a crossed factor: the bootstrap resamples digits and draws independently (rows and
columns of the matrix), and for comparison digits alone (the standard error ``jaxdiff eval``
reports, which ignores the Monte Carlo error shared by every digit of a draw) and draws alone.
It also shows what fewer draws per digit give: the means of disjoint groups of k draws, the
way ``jaxdiff eval --bound_draws k`` would have reported them.

Writes ``vdm_bound_uncertainty.json`` into ``--out``.

Usage::

    python experiments/vdm_bound_uncertainty.py --workdir runs/digits_vdm --draws 128
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxdiff import data, train


def bound_matrix(run, images, seed: int, draws: int) -> np.ndarray:
    """``[N, draws]`` total bits/dim, draw d with the key ``fold_in(PRNGKey(seed), d)``."""
    estimate = run.family.bound()
    fn = jax.jit(lambda state, x0, key: estimate.fn(state, x0, key)["total"])
    x0 = data.to_model_range(images)
    base = jax.random.PRNGKey(seed)
    columns = [np.asarray(fn(run.state, x0, jax.random.fold_in(base, d))) for d in range(draws)]
    return np.stack(columns, axis=1).astype(np.float64)


def bootstrap(matrix: np.ndarray, rng: np.random.Generator, *, rows: bool, cols: bool,
              num: int = 2000) -> float:
    """The standard deviation of the mean over ``num`` bootstrap replicates that resample the
    rows (digits) and/or the columns (draws) of ``matrix`` with replacement."""
    n, d = matrix.shape
    means = np.empty(num)
    for b in range(num):
        i = rng.integers(0, n, n) if rows else np.arange(n)
        j = rng.integers(0, d, d) if cols else np.arange(d)
        means[b] = matrix[np.ix_(i, j)].mean()
    return float(means.std(ddof=1))


def summary(matrix: np.ndarray, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n, d = matrix.shape
    groups = {}
    for k in (1, 32):
        if d >= 2 * k:
            means = matrix[:, : (d // k) * k].reshape(n, d // k, k).mean(axis=(0, 2))
            per_digit_se = matrix[:, :k].mean(1).std(ddof=1) / np.sqrt(n)
            groups[k] = dict(means=[round(float(m), 4) for m in means],
                             min=float(means.min()), max=float(means.max()),
                             stderr_across_digits=float(per_digit_se))
    flat = matrix.ravel()
    top = np.sort(flat)[::-1]
    return dict(
        mean=float(matrix.mean()),
        se_digits_and_draws=bootstrap(matrix, rng, rows=True, cols=True),
        se_digits_only=bootstrap(matrix, rng, rows=True, cols=False),
        se_draws_only=bootstrap(matrix, rng, rows=False, cols=True),
        se_eval_style=float(matrix.mean(1).std(ddof=1) / np.sqrt(n)),
        quantiles={q: float(np.quantile(flat, q)) for q in (0.01, 0.5, 0.99, 0.999)},
        max=float(top[0]),
        share_of_top_0p1_percent=float(top[: max(1, flat.size // 1000)].sum() / flat.sum()),
        groups_of_k_draws=groups,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained digits VDM run")
    parser.add_argument("--draws", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="experiments/figures")
    args = parser.parse_args()
    run = train.load_run(args.workdir)
    images = np.stack([e["x"] for e in data.digits("test")])
    result = dict(workdir=args.workdir, step=run.step, num_digits=len(images), draws=args.draws,
                  seeds={})
    matrices = []
    for seed in args.seeds:
        start = time.perf_counter()
        matrix = bound_matrix(run, images, seed, args.draws)
        matrices.append(matrix)
        result["seeds"][seed] = dict(summary(matrix, seed), seconds=time.perf_counter() - start)
        print(seed, json.dumps(result["seeds"][seed]["mean"]), flush=True)
    both = np.concatenate(matrices, axis=1)
    result["pooled"] = summary(both, 99)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vdm_bound_uncertainty.json").write_text(json.dumps(result, indent=1))
    for name, s in [*result["seeds"].items(), ("pooled", result["pooled"])]:
        print(f"{name}: {s['mean']:.4f} +- {s['se_digits_and_draws']:.4f} (digits and draws), "
              f"+- {s['se_digits_only']:.4f} (digits only), +- {s['se_draws_only']:.4f} (draws only)")


if __name__ == "__main__":
    main()
