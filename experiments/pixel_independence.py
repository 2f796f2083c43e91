"""Does a per-pixel loss learn the joint distribution? Held-out bits/dim on the digits test
split for the independent-pixel model and for the diffusion models trained with a per-pixel
loss, and a conditional test of the claim at every noise level.

The table: each run's bound (``jaxdiff eval`` JSON: total, stderr and its parts, prior L_T,
diffusion sum L_t-1 and decoder L_0; the PF-ODE likelihood where the JSON has one; a VAE's
-ELBO) beside the independent-pixel model over 17 levels and over 256 values.

The conditional test: on the same noisy inputs z = alpha x + sigma eps of the test digits, at
the same log-SNR points lambda of the best run's schedule, two denoisers are scored by the
loss the runs are trained on, 0.5 E||eps - eps_hat||^2 per unit log-SNR (VDM's continuous-time
diffusion term, Kingma et al. 2021, eq. 17 in lambda): the run's network, which sees all 64
noisy pixels, and the exact posterior mean under the 17-level independent-pixel model fitted
on the train split, which sees only its own pixel (:func:`jaxdiff.metrics.pixel_baseline.
posterior_mean`, the best denoiser of that kind). The integral of the difference is the
information carried between pixels; with its prior and decoder terms the independent denoiser's
integral is the independent-pixel likelihood again (I-MMSE), which checks the measurement.

The figure: bits per unit log-SNR along lambda for every run (the discrete runs from their
eval's per-t terms, L_t-1 / (lambda_t-1 - lambda_t); a VDM run from its network's eps error),
and for the independent denoiser.

Writes ``pixel_independence.{json,csv,png}`` into ``--out``.

Usage::

    jaxdiff eval --workdir runs/digits_ddpm --output runs/digits_ddpm/eval.json   # each run
    python experiments/pixel_independence.py \\
        --run "DDPM (L_simple)" runs/digits_ddpm runs/digits_ddpm/eval.json \\
        --run "improved DDPM" runs/digits_iddpm runs/digits_iddpm/eval.json \\
        --run "VDM" runs/digits_vdm runs/digits_vdm/eval.json \\
        [--vae runs/digits_vae/eval.json] [--out experiments/out]
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from jaxdiff import data, evaluate, train, vdm
from jaxdiff.diffusion import split_learned_variance
from jaxdiff.metrics import pixel_baseline

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PARTS = ("prior_bpd", "diffusion_bpd", "decoder_bpd")
HEADER = ("model", "bits/dim", "stderr", "prior", "diffusion", "decoder")


class Levels(NamedTuple):
    """Noise levels of a run: log-SNR ``lambdas`` [K] (increasing) and ``eps_fn(z, k)``, the
    network's eps prediction at level k."""

    lambdas: np.ndarray
    eps_fn: Callable


def vdm_levels(run, num: int) -> Levels:
    """K equally spaced t in [0, 1] of a VDM run's (learned) schedule."""
    t = np.linspace(0.0, 1.0, num)[::-1]  # increasing lambda = -gamma(t)
    process = run.schedule  # the VPGamma of the run's schedule
    lambdas = np.asarray(process.log_snr_at(jnp.asarray(t, jnp.float32)))
    fn = jax.jit(lambda z, t_k: run.model_fn(z, jnp.full((z.shape[0],), process.model_time(t_k))))
    return Levels(lambdas, lambda z, k: fn(z, t[k]))


def ddpm_levels(run, num: int) -> Levels:
    """K of the T steps of a discrete (eps-predicting) run, lambda_t = log(abar / (1 - abar))."""
    if run.config.diffusion.prediction != "eps":
        raise ValueError("the conditional test needs an eps-predicting run")
    schedule = run.schedule
    steps = np.unique(np.linspace(0, schedule.num_timesteps - 1, num).round().astype(int))[::-1]
    abar = np.asarray(schedule.alphas_cumprod)[steps]
    variance = run.config.diffusion.variance

    @jax.jit
    def fn(z, t):
        out = run.model_fn(z, jnp.full((z.shape[0],), t, jnp.int32))
        return split_learned_variance(out, z.shape[-1], variance)[0]

    return Levels(np.log(abar / (1.0 - abar)), lambda z, k: fn(z, schedule.timesteps[steps[k]]))


def eps_errors(levels: Levels, log_probs, x, rng) -> dict:
    """Per-level eps mean squared errors (per dimension, averaged over the digits) of the
    network and of the independent-pixel posterior mean, on the same z at every level."""
    net, indep = [], []
    for k, lam in enumerate(levels.lambdas):
        a, s = math.sqrt(1.0 / (1.0 + math.exp(-lam))), math.sqrt(1.0 / (1.0 + math.exp(lam)))
        eps = jax.random.normal(jax.random.fold_in(rng, k), x.shape)
        z = a * x + s * eps
        eps_indep = (z - a * pixel_baseline.posterior_mean(log_probs, z, a, s)) / s
        net.append(float(jnp.mean((levels.eps_fn(z, k) - eps) ** 2)))
        indep.append(float(jnp.mean((eps_indep - eps) ** 2)))
    return dict(network=np.array(net), independent=np.array(indep))


def diffusion_bits(lambdas, mse) -> float:
    """The continuous-time diffusion term in bits/dim, int 0.5 mse(lambda) dlambda / log 2
    (Kingma et al. 2021, eq. 17 with lambda = -gamma as the variable), by the trapezoid rule."""
    return float(np.trapezoid(0.5 * np.asarray(mse), lambdas) / math.log(2.0))


def end_terms(lambdas, log_probs, x, rng) -> dict:
    """The prior KL at the lowest level and the independent-pixel decoder -log p(x | z) at the
    highest (its exact posterior), in bits/dim."""
    prior = vdm.prior_kl(jnp.asarray(-lambdas[0], jnp.float32), x).mean() / math.log(2.0)
    lam = lambdas[-1]
    a, s = math.sqrt(1.0 / (1.0 + math.exp(-lam))), math.sqrt(1.0 / (1.0 + math.exp(lam)))
    z = a * x + s * jax.random.normal(rng, x.shape)
    post = pixel_baseline.posterior_log_probs(log_probs, z, a, s)
    index = jnp.round((x + 1.0) * 127.5).astype(jnp.int32)
    decoder = -jnp.take_along_axis(post, index[..., None], axis=-1).mean() / math.log(2.0)
    return dict(prior_bpd=float(prior), decoder_bpd=float(decoder))


def density_of_terms(run, result) -> tuple[np.ndarray, np.ndarray]:
    """A discrete run's bits per unit log-SNR: L_t-1 / (lambda_t-1 - lambda_t) at the interval
    midpoints, t = 1 .. T-1, from its eval's per-t terms."""
    abar = np.asarray(run.schedule.alphas_cumprod, np.float64)
    lam = np.log(abar / (1.0 - abar))
    terms = np.asarray(result["terms_bpd"])[1:]
    return 0.5 * (lam[1:] + lam[:-1]), terms / (lam[:-1] - lam[1:])


def pixel_rows(test, train_x) -> list[dict]:
    rows = []
    for name, kwargs in (
        ("independent pixels, 17 levels", {"levels": np.unique(train_x)}),
        ("independent pixels, 256 values", {}),
    ):
        fitted = pixel_baseline.fit_pixel_categoricals(train_x, **kwargs)
        bpd = np.asarray(pixel_baseline.pixel_nll_bpd(fitted, test), np.float64)
        rows.append(dict(model=name, total_bpd=float(bpd.mean()),
                         stderr_bpd=float(bpd.std(ddof=1) / math.sqrt(bpd.size))))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=3, action="append", default=[],
                        metavar=("LABEL", "WORKDIR", "EVAL_JSON"), help="a diffusion run")
    parser.add_argument("--vae", default=None, help="the eval JSON of a digits_vae run")
    parser.add_argument("--levels", type=int, default=100, help="noise levels of the test")
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    test = np.stack([e["x"] for e in data.digits("test")])
    train_x = np.stack([e["x"] for e in data.digits("train")])
    rows = pixel_rows(test, train_x)
    runs = []
    for label, workdir, path in args.run:
        result = json.loads(Path(path).read_text())
        runs.append((label, train.load_run(workdir), result))
        rows.append(dict(model=f"{label} (step {result['step']})", **{
            k: result[k] for k in ("total_bpd", "stderr_bpd", *PARTS)}))
        if "ode_bpd" in result:
            rows.append(dict(model=f"{label}, PF-ODE likelihood ({result['ode_num_examples']} "
                             "digits)", total_bpd=result["ode_bpd"],
                             stderr_bpd=result["ode_stderr_bpd"]))
    if args.vae:
        result = json.loads(Path(args.vae).read_text())
        rows.append(dict(model=f"VAE -ELBO (step {result['step']})",
                         **{k: result[k] for k in ("total_bpd", "stderr_bpd", *PARTS)}))
        rows.append(dict(model=f"VAE IWAE, k = {result.get('iwae_samples', '')}",
                         total_bpd=result["iwae_bpd"], stderr_bpd=result["iwae_stderr_bpd"]))

    # the conditional test on the best run
    label, best, best_result = min(runs, key=lambda r: r[2]["total_bpd"])
    x = jnp.asarray(data.to_model_range(test[: args.max_examples]))
    log_probs = pixel_baseline.fit_pixel_categoricals(train_x, levels=np.unique(train_x))
    is_vdm = best.config.diffusion.kind == "vdm"
    levels = (vdm_levels if is_vdm else ddpm_levels)(best, args.levels)
    key = jax.random.PRNGKey(args.seed)
    errors = eps_errors(levels, log_probs, x, key)
    ends = end_terms(levels.lambdas, log_probs, x, jax.random.fold_in(key, 10**6))
    d_net = diffusion_bits(levels.lambdas, errors["network"])
    d_indep = diffusion_bits(levels.lambdas, errors["independent"])
    rows.append(dict(model=f"{label}: its network's eps error, same z", total_bpd=None,
                     stderr_bpd=None, diffusion_bpd=d_net))
    rows.append(dict(model="independent-pixel posterior mean, same z (17 levels)",
                     total_bpd=ends["prior_bpd"] + d_indep + ends["decoder_bpd"], stderr_bpd=None,
                     diffusion_bpd=d_indep, **ends))
    gap = d_indep - d_net
    saved = errors["independent"] - errors["network"]  # > 0 where the network does better
    won = diffusion_bits(levels.lambdas, np.maximum(saved, 0.0))
    where = levels.lambdas[saved > 0]
    baseline = rows[0]["total_bpd"]
    best_total = best_result["total_bpd"]
    if best_total < baseline:
        answer = (f"Yes: the best per-pixel-loss model ({label}) needs {best_total:.3f} "
                  f"bits/dim on held-out digits, below the {baseline:.3f} of the best "
                  f"independent-pixel model.")
    else:
        answer = (f"Not in total: the best bound ({label}, {best_total:.3f} bits/dim) stays "
                  f"above the independent-pixel {baseline:.3f}.")
    span = f" (log-SNR {where.min():.1f} to {where.max():.1f})" if where.size else ""
    answer += (f" On the same noisy inputs its network's denoising costs {d_net:.3f} bits/dim, "
               f"the exact independent-pixel denoiser's {d_indep:.3f}: the network does better "
               f"at {where.size} of {saved.size} noise levels{span}, {won:.3f} bits/dim taken "
               f"from the other pixels, and loses {won - gap:.3f} elsewhere.")

    table = [[r["model"], *[r.get(k) if r.get(k) is not None else "" for k in
                            ("total_bpd", "stderr_bpd", *PARTS)]] for r in rows]
    print(f"digits test split, {test.shape[0]} examples (conditional test on "
          f"{x.shape[0]}, {len(levels.lambdas)} log-SNR levels)")
    print(evaluate.format_table(table, header=HEADER))
    print(answer)
    conditional = dict(
        run=label, lambdas=levels.lambdas.tolist(), network_bpd=d_net, independent_bpd=d_indep,
        carried_bpd=won, **{k: v.tolist() for k, v in errors.items()}, **ends,
    )
    summary = dict(rows=rows, answer=answer, conditional=conditional)
    (out / "pixel_independence.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "pixel_independence.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(table)

    fig, ax = plt.subplots(figsize=(7, 4))
    to_bits = functools.partial(np.multiply, 0.5 / math.log(2.0))
    for name, run, result in runs:
        if "terms_bpd" in result and run.config.diffusion.kind == "ddpm":
            lam, density = density_of_terms(run, result)
            ax.semilogy(lam, density, lw=1, label=f"{name}: {result['total_bpd']:.2f} bits/dim "
                        f"(decoder {result['decoder_bpd']:.2f})")
        elif run is not best and run.config.diffusion.kind == "vdm":  # its network, same way
            own = vdm_levels(run, args.levels)
            mse = eps_errors(own, log_probs, x, key)["network"]
            ax.semilogy(own.lambdas, to_bits(mse), lw=1, label=f"{name}, network on the test's "
                        f"z: {diffusion_bits(own.lambdas, mse):.2f} (diffusion)")
    ax.semilogy(levels.lambdas, to_bits(errors["network"]), lw=1.5, color="k",
                label=f"{label}, network on the test's z: {d_net:.2f} (diffusion)")
    ax.semilogy(levels.lambdas, to_bits(errors["independent"]), lw=1.5, ls="--", color="gray",
                label=f"independent-pixel denoiser on the same z: {d_indep:.2f} (diffusion)")
    ax.set_ylim(1e-4, 2.0)
    ax.set_xlabel("log-SNR  lambda = log(alpha^2 / sigma^2)   (noise on the left)")
    ax.set_ylabel("bits/dim per unit log-SNR")
    ax.set_title("where the bits are spent, digits test split", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "pixel_independence.png", dpi=150)
    print(f"wrote {out / 'pixel_independence.json'}, .csv and .png")


if __name__ == "__main__":
    main()
