"""Deterministic samplers against the exact probability-flow map: error versus model calls.

Data x_0 ~ N(mean, diag(variance)) in D = 16 dimensions; the model is the optimal
eps-predictor of the linear T = 1000 schedule at every real timestep
(the exact score ``analytic.mixture_score_fn`` at the schedule's continuous levels), so what is left is each
solver's discretisation error. Each sampler is compared with ``analytic.gaussian_flow_map``
between its own end points: DDIM from its first timestep ((S - 1) T / S) to abar = 1, the ODE
solvers from tau = T - 1 to tau = 0 (abar_0 = 1 - beta_0).

Samplers: DDIM (``ddim_sample``), DPM-Solver++ orders 1-3 (``dpm_solver_sample``; log-SNR grid,
and 2M also on the uniform-time grid), Heun (``ode_sample``, 2 calls per step) and adaptive
Tsitouras 5(4) and Dormand-Prince 8(5,3) (``ode_sample(method=...)`` over a range of
tolerances; NFE from diffrax's step counts).

Runs in float64 (``jax_enable_x64``) so that the third-order errors do not meet float32's
rounding floor. Prints the table and each fixed-step sampler's fitted order (slope of log error against log
NFE over its three finest points), writes ``solver_convergence.csv`` and
``solver_convergence.png`` (log-log NFE vs RMS error) into ``--outdir``.

Usage::

    python experiments/solver_convergence.py [--outdir .] [--batch 1024]
"""

from __future__ import annotations

import argparse
import csv
import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxdiff import analytic, samplers, schedules  # noqa: E402


def real_time_eps(schedule, mean, variance):
    """The optimal eps of Gaussian data at every real timestep tau."""
    return analytic.process_mixture_eps_fn(
        schedule, [1.0], jnp.asarray(mean)[None], jnp.asarray(variance)[None]
    )


NFES = (5, 10, 15, 20, 30, 50, 100, 200)
TOLERANCES = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
ADAPTIVE = ("tsit5", "dopri8")


def gaussian_problem(dims: int, batch: int, seed: int):
    """The data's mean and variance, the schedule, the optimal model and x_T."""
    k_mean, k_var, k_x = jax.random.split(jax.random.key(seed), 3)
    mean = jax.random.uniform(k_mean, (dims,), minval=-0.5, maxval=0.5)
    variance = jax.random.uniform(k_var, (dims,), minval=0.01, maxval=0.5)
    schedule = schedules.linear(1000)
    model_fn = real_time_eps(schedule, mean, variance)
    return mean, variance, schedule, model_fn, jax.random.normal(k_x, (batch, dims))


def errors(x, exact):
    err = np.asarray(x - exact, np.float64)
    return float(np.sqrt(np.mean(err**2))), float(np.max(np.abs(err)))


def run(batch: int = 1024, dims: int = 16, seed: int = 0):
    """Returns rows ``(sampler, setting, nfe, rms_error, max_error)``."""
    mean, variance, schedule, model_fn, x_T = gaussian_problem(dims, batch, seed)
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))  # float64 end points
    T = schedule.num_timesteps
    ode_exact = analytic.gaussian_flow_map(x_T, abar[-1], abar[0], mean, variance)
    rows = []
    for nfe in NFES:
        first = (nfe - 1) * (T // nfe)
        exact = analytic.gaussian_flow_map(x_T, abar[first], 1.0, mean, variance)
        x = samplers.ddim_sample(model_fn, schedule, x_T, num_steps=nfe)
        rows.append(("DDIM", "uniform timesteps", nfe, *errors(x, exact)))
        for order, grid in ((1, samplers.uniform_logsnr_grid), (2, samplers.uniform_logsnr_grid),
                            (3, samplers.uniform_logsnr_grid), (2, samplers.uniform_time_grid)):
            x = samplers.dpm_solver_sample(model_fn, schedule, x_T, num_steps=nfe, order=order,
                                           grid=grid)
            name = {1: "DPM-Solver++(1)", 2: "DPM-Solver++(2M)", 3: "DPM-Solver++(3M)"}[order]
            rows.append((name, grid.__name__, nfe, *errors(x, ode_exact)))
        if nfe % 2 == 0:
            x = samplers.ode_sample(model_fn, schedule, x_T, method="heun", num_steps=nfe // 2)
            rows.append(("Heun", "uniform_logsnr_grid", nfe, *errors(x, ode_exact)))
    for method in ADAPTIVE:
        for tol in TOLERANCES:
            out = samplers.ode_sample(model_fn, schedule, x_T, method=method, rtol=tol, atol=tol,
                                      return_info=True)
            rows.append((method, f"rtol=atol={tol:g}", int(out.nfe), *errors(out.samples, ode_exact)))
    return rows


def fitted_orders(rows):
    """Slope of log RMS error vs log NFE over the three largest NFE, per fixed-step sampler."""
    orders = {}
    for key in sorted({(r[0], r[1]) for r in rows if r[0] not in ADAPTIVE}):
        pts = sorted((r[2], r[3]) for r in rows if (r[0], r[1]) == key)[-3:]
        nfe, err = np.array(pts).T
        orders[key] = -np.polyfit(np.log(nfe), np.log(err), 1)[0]
    return orders


def series(row):
    """The curve a row belongs to: an adaptive method's tolerances form one curve."""
    return (row[0], "adaptive") if row[0] in ADAPTIVE else (row[0], row[1])


def plot(rows, path):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for key in dict.fromkeys(series(r) for r in rows):
        nfe, err = np.array(sorted((r[2], r[3]) for r in rows if series(r) == key)).T
        label = key[0] + {"uniform_time_grid": ", uniform time",
                          "adaptive": " (adaptive, tol 1e-2..1e-6)"}.get(key[1], "")
        style = "--" if key[1] == "uniform_time_grid" else ":" if key[1] == "adaptive" else "-"
        ax.loglog(nfe, err, style, marker="o", markersize=3, label=label)
    ax.set_xlabel("model evaluations (NFE)")
    ax.set_ylabel("RMS error to the exact PF-ODE map")
    ax.set_title("Gaussian data, optimal model, linear T = 1000")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--float32", action="store_true",
                        help="run in float32 (errors then floor near 1e-6)")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", not args.float32)
    rows = run(batch=args.batch)
    print(f"{'sampler':<18} {'setting':<22} {'NFE':>5} {'rms error':>10} {'max error':>10}")
    for name, setting, nfe, rms, mx in rows:
        print(f"{name:<18} {setting:<22} {nfe:>5} {rms:10.3e} {mx:10.3e}")
    print("fitted order (slope of log rms error vs log NFE, three largest NFE):")
    for (name, setting), slope in fitted_orders(rows).items():
        print(f"  {name:<18} {setting:<22} {slope:5.2f}")
    os.makedirs(args.outdir, exist_ok=True)
    csv_path = os.path.join(args.outdir, "solver_convergence.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sampler", "setting", "nfe", "rms_error", "max_error"])
        writer.writerows(rows)
    png_path = os.path.join(args.outdir, "solver_convergence.png")
    plot(rows, png_path)
    print(f"wrote {csv_path} and {png_path}")


if __name__ == "__main__":
    main()
