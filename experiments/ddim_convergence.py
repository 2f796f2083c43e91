"""DDIM (eta = 0) converges to the exact probability-flow map as the number of steps grows.

Data x_0 ~ N(mean, diag(variance)) in D dimensions; the model is the optimal eps-predictor
``analytic.gaussian_eps_fn`` of the linear T = 1000 schedule, so the only error left is
DDIM's discretisation of the probability-flow ODE. The exact map from the first visited level
(abar at the last selected timestep) to the data is ``analytic.gaussian_flow_map``.

Prints a table (steps, RMS and max error, error ratio) and the fitted order (slope of log error
against log steps), and writes it to ``--output`` (CSV).

Usage::

    python experiments/ddim_convergence.py [--output ddim_convergence.csv]
"""

from __future__ import annotations

import argparse
import csv

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import analytic, schedules
from jaxdiff.samplers import ddim_sample, uniform_timesteps

STEPS = (10, 20, 50, 100, 1000)


def ddim_errors(steps=STEPS, *, num_timesteps=1000, batch=4096, seed=0):
    """Returns ``[(num_steps, rms_error, max_error)]`` of DDIM against the exact PF-ODE map."""
    mean = jnp.array([0.5, -0.3, 0.0, 0.2])
    variance = jnp.array([0.25, 0.1, 0.5, 0.02])
    schedule = schedules.linear(num_timesteps)
    model_fn = analytic.gaussian_eps_fn(schedule, mean, variance)
    x_T = jax.random.normal(jax.random.key(seed), (batch, mean.shape[0]))
    rows = []
    for num_steps in steps:
        first = uniform_timesteps(num_timesteps, num_steps)[-1]
        exact = analytic.gaussian_flow_map(x_T, schedule.alphas_cumprod[first], 1.0, mean, variance)
        err = ddim_sample(model_fn, schedule, x_T, num_steps=num_steps) - exact
        rows.append((num_steps, float(jnp.sqrt(jnp.mean(err**2))), float(jnp.max(jnp.abs(err)))))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="ddim_convergence.csv")
    args = parser.parse_args()
    rows = ddim_errors()
    print(f"{'steps':>6} {'rms error':>11} {'max error':>11} {'rms ratio':>10}")
    for i, (n, rms, mx) in enumerate(rows):
        ratio = f"{rows[i - 1][1] / rms:10.2f}" if i else f"{'':>10}"
        print(f"{n:>6} {rms:11.3e} {mx:11.3e} {ratio}")
    n, rms = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    slope = np.polyfit(np.log(n), np.log(rms), 1)[0]
    print(f"fitted order (slope of log rms error vs log steps): {slope:.2f}")
    with open(args.output, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["num_steps", "rms_error", "max_error"])
        writer.writerows(rows)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
