"""Sample quality against the number of sampling steps on the digits model: the shape of
DDIM's Table 1 (Song, Meng & Ermon 2021), with the digits Fréchet distance in place of FID.

Samplers: DDPM ancestral sampling on a respaced schedule (Nichol & Dhariwal 2021, Sec. 4;
the run's reverse variance), DDIM with eta = 0 and eta = 1 (timesteps T // S apart), and
multistep DPM-Solver++(2M) (Lu et al. 2022b). Every configuration starts from the same x_T.
The quality figures are those of :func:`jaxdiff.metrics.digits.sample_quality` (Fréchet
distance of the classifier's features against the test split, classifier score, confidence);
the train split's own figures (the same number of real digits) are the floor.

Writes ``steps_vs_quality.png`` and ``steps_vs_quality.csv`` into ``--out`` and prints the
table (rows: sampler, columns: steps).

Usage::

    python experiments/steps_vs_quality.py --workdir runs/digits_ddpm [--num 500] [--steps 10 20 50 100 1000]
"""

from __future__ import annotations

import argparse
import csv
import functools
import time
from pathlib import Path

import jax
import matplotlib
import matplotlib.ticker
import numpy as np

from jaxdiff import data, evaluate, samplers, train
from jaxdiff.metrics import digits

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def sampler_table(variance: str, clip_denoised: bool) -> dict:
    """name -> ``chain(model_fn, schedule, x_T, rng, num_steps) -> x_0``."""
    return {
        "DDPM": lambda f, s, x, rng, n: samplers.ddpm_sample(
            f, s, x, rng, variance=variance, clip_denoised=clip_denoised, num_steps=n
        ),
        "DDIM eta=0": lambda f, s, x, rng, n: samplers.ddim_sample(
            f, s, x, rng, num_steps=n, eta=0.0, clip_denoised=clip_denoised
        ),
        "DDIM eta=1": lambda f, s, x, rng, n: samplers.ddim_sample(
            f, s, x, rng, num_steps=n, eta=1.0, clip_denoised=clip_denoised
        ),
        "DPM-Solver++(2M)": lambda f, s, x, rng, n: samplers.dpm_solver_sample(
            f, s, x, num_steps=n, order=2, grid=samplers.uniform_logsnr_grid
        ),
    }


def sample_fn_for(run, chain, num_steps):
    """``sample(variables, rng, n)`` for :func:`jaxdiff.evaluate.generate`: x_T from the
    prior with the key's first half (so every sampler starts from the same x_T), the chain
    with the second."""

    def sample(variables, rng, n):
        prior_key, chain_key = jax.random.split(rng)
        x_T = run.experiment.prior(prior_key, (n, *run.experiment.data_shape))
        model_fn = functools.partial(run.experiment.model.apply, variables)
        return chain(model_fn, run.schedule, x_T, chain_key, num_steps)

    return sample


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained digits DDPM run")
    parser.add_argument("--num", type=int, default=500, help="samples per configuration")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    parser.add_argument("--samplers", nargs="+", default=None, help="subset of the sampler names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    run = train.load_run(args.workdir)
    if run.config.data.dataset != "digits":
        raise SystemExit(
            f"--workdir must hold a digits run, got dataset {run.config.data.dataset!r}"
        )
    params = digits.load_classifier()
    reference = digits.reference_statistics(params)
    table = sampler_table(run.config.diffusion.variance, run.config.sampling.clip_denoised)
    names = args.samplers or list(table)
    rng = jax.random.PRNGKey(args.seed)

    real = np.stack([e["x"] for e in data.digits("train")])[: args.num]
    floor = digits.sample_quality(real, params=params, reference=reference)
    rows = [("train split (real)", 0, floor["fd"], floor["score"], floor["confidence"], 0.0)]
    print(f"real train digits ({real.shape[0]}): FD {floor['fd']:.3f}, score {floor['score']:.2f}")
    for name in names:
        for steps in args.steps:
            tic = time.time()
            x = evaluate.generate(
                sample_fn_for(run, table[name], steps),
                run.variables,
                args.num,
                rng,
                batch_size=args.num,
            )
            q = digits.sample_quality(data.to_uint8(x), params=params, reference=reference)
            seconds = time.time() - tic
            rows.append((name, steps, q["fd"], q["score"], q["confidence"], seconds))
            print(
                f"{name:>18} S={steps:5d}: FD {q['fd']:8.3f}  score {q['score']:5.2f}  "
                f"confidence {q['confidence']:.3f}  ({seconds:.0f} s)",
                flush=True,
            )
            np.savez(
                out / f"samples_{name.replace(' ', '_').replace('=', '')}_{steps}.npz",
                samples=data.to_uint8(x),
            )

    with open(out / "steps_vs_quality.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["sampler", "steps", "digits_fd", "classifier_score", "confidence", "seconds"]
        )
        writer.writerows(rows)

    header = ("sampler", *[f"S={s}" for s in args.steps])
    fd = {(r[0], r[1]): r[2] for r in rows}
    print(
        evaluate.format_table(
            [[n, *[fd[(n, s)] for s in args.steps]] for n in names], header=header
        )
    )
    print(f"(digits Fréchet distance, {args.num} samples; real train digits: {floor['fd']:.3f})")

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name in names:
        ax.plot(args.steps, [fd[(name, s)] for s in args.steps], marker="o", label=name)
    ax.axhline(floor["fd"], color="gray", ls="--", lw=1, label="real digits (train split)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("sampling steps S")
    ax.set_ylabel("digits Fréchet distance")
    ax.set_title(f"sample quality vs steps (run step {run.step}, {args.num} samples)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "steps_vs_quality.png", dpi=150)
    print(f"wrote {out / 'steps_vs_quality.png'} and {out / 'steps_vs_quality.csv'}")


if __name__ == "__main__":
    main()
