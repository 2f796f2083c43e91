"""Sample quality against the number of network evaluations (NFE) for three processes trained
on the digits with the same U-Net and the same budget (configs digits_ddpm, digits_edm,
digits_flow: 3,000 steps of 64 images): DDPM (Ho et al. 2020) sampled with DDIM and with EDM's
Heun sampler through Table 1's VP column, EDM (Karras et al. 2022) with its Heun sampler
(Alg. 1) and Euler's method, and flow matching (Lipman et al. 2023) with Euler and Heun.

Every point draws ``--num`` samples through ``jaxdiff.train.build_sampler`` (what ``jaxdiff
sample`` runs) from the same key, and reports the digits Fréchet distance of
:func:`jaxdiff.metrics.digits.sample_quality` (real train digits are the floor).

Writes ``modern_nfe.png``, ``modern_nfe.csv`` and ``modern_nfe.md`` into ``--out``.

Usage::

    nice -n 10 python experiments/modern_nfe.py --ddpm runs/digits_ddpm --edm runs/digits_edm \\
        --flow runs/digits_flow [--num 1000] [--out experiments/figures]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import jax
import matplotlib
import matplotlib.ticker
import numpy as np

from jaxdiff import data, evaluate, train
from jaxdiff.metrics import digits

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ONE_CALL = [5, 10, 20, 50, 100]  # steps of one-evaluation samplers (NFE = steps)
TWO_CALLS = [3, 5, 10, 25, 50]  # steps of Heun's method (NFE = 2 steps, or 2 steps - 1)

# curve -> (run, sampler overrides, steps, nfe(steps))
CURVES = {
    "DDPM, DDIM": ("ddpm", dict(sampler="ddim"), ONE_CALL, lambda n: n),
    "DDPM, EDM Heun (VP column)": ("ddpm", dict(sampler="edm"), TWO_CALLS, lambda n: 2 * n - 1),
    "EDM, Heun (Alg. 1)": ("edm", dict(sampler="edm"), TWO_CALLS, lambda n: 2 * n - 1),
    "EDM, Euler": ("edm", dict(sampler="edm", method="euler"), ONE_CALL, lambda n: n),
    "flow, Euler": ("flow", dict(sampler="flow", method="euler"), ONE_CALL, lambda n: n),
    "flow, Heun": ("flow", dict(sampler="flow", method="heun"), TWO_CALLS, lambda n: 2 * n),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for kind in ("ddpm", "edm", "flow"):
        parser.add_argument(f"--{kind}", required=True, help=f"a trained digits_{kind} run")
    parser.add_argument("--num", type=int, default=1000, help="samples per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/figures")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    runs = {kind: train.load_run(getattr(args, kind)) for kind in ("ddpm", "edm", "flow")}
    params = digits.load_classifier()
    reference = digits.reference_statistics(params)
    real = np.stack([e["x"] for e in data.digits("train")])[: args.num]
    floor = digits.sample_quality(real, params=params, reference=reference)["fd"]
    rng = jax.random.PRNGKey(args.seed)

    rows = []
    for curve, (kind, overrides, steps_list, nfe) in CURVES.items():
        run = runs[kind]
        for steps in steps_list:
            tic = time.time()
            sample = train.build_sampler(run.config, run.experiment, num_steps=steps, **overrides)
            x = evaluate.generate(sample, run.variables, args.num, rng, batch_size=args.num)
            q = digits.sample_quality(data.to_uint8(x), params=params, reference=reference)
            seconds = time.time() - tic
            rows.append((curve, steps, nfe(steps), q["fd"], q["score"], min(q["histogram"]), seconds))
            print(f"{curve:>28} steps {steps:4d} NFE {nfe(steps):4d}: FD {q['fd']:8.3f} "
                  f"score {q['score']:5.2f} rarest class {min(q['histogram']):.3f} ({seconds:.0f} s)",
                  flush=True)

    header = ["curve", "steps", "nfe", "digits_fd", "classifier_score", "rarest_class", "seconds"]
    with open(out / "modern_nfe.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    table = evaluate.format_table(
        [[c, s, n, fd, score] for c, s, n, fd, score, _, _ in rows],
        header=["curve", "steps", "NFE", "digits FD", "classifier score"],
    )
    budget = {k: runs[k].step for k in runs}
    note = (f"digits Fréchet distance of {args.num} samples (real train digits: {floor:.3f}); "
            f"training steps {budget}")
    (out / "modern_nfe.md").write_text(f"```\n{table}\n```\n{note}\n")
    print(table)
    print(note)

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for curve in CURVES:
        pts = [(n, fd) for c, _, n, fd, *_ in rows if c == curve]
        ax.plot(*zip(*pts), marker="o", label=curve)
    ax.axhline(floor, color="gray", ls="--", lw=1, label="real digits (train split)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel("digits Fréchet distance")
    ax.set_title(f"digits: quality vs NFE, same U-Net and budget ({args.num} samples)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "modern_nfe.png", dpi=150)
    print(f"wrote {out / 'modern_nfe.png'}, {out / 'modern_nfe.csv'} and {out / 'modern_nfe.md'}")


if __name__ == "__main__":
    main()
