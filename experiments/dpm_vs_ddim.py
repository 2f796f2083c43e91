"""DPM-Solver++ on its default grid against DDIM at equal model calls, with the exact model of
Gaussian data: RMS distance of each sampler's output to the exact probability-flow map from its
own start (DDIM from its first timestep (S - 1) T / S to abar = 1; DPM-Solver++ from tau = T - 1
to tau = 0), linear schedule T = 1000, D = 4, 64 draws of x_T. The grids: the default
(near-equal log-SNR steps on the integers, int32 t), the former default (equal steps in t on the
integers, diffusers' "linspace") and the real-valued log-SNR grid of Lu et al. (2022a).

    PYTHONPATH=. python experiments/dpm_vs_ddim.py   # prints the table, about a minute on CPU
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import analytic, samplers, schedules

def real_time_eps(schedule, mean, variance):
    """The optimal eps of Gaussian data at every real timestep tau."""
    return analytic.process_mixture_eps_fn(
        schedule, [1.0], jnp.asarray(mean)[None], jnp.asarray(variance)[None]
    )


SCHED = schedules.linear(1000)
T = SCHED.num_timesteps
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.02, T))
MEAN = jnp.array([0.5, -0.3, 0.0, 0.2])
VAR = jnp.array([0.25, 0.04, 0.5, 0.09])
X_T = jax.random.normal(jax.random.key(0), (64, 4))
MODEL = real_time_eps(SCHED, MEAN, VAR)


def linspace_integer_grid(schedule, num_steps):
    """The former default: equal steps in t, rounded to the integers."""
    return jnp.round(jnp.linspace(schedule.num_timesteps - 1, 0.0, num_steps + 1))


def error(x, abar_from, abar_to):
    exact = analytic.gaussian_flow_map(X_T, abar_from, abar_to, MEAN, VAR)
    return float(jnp.sqrt(jnp.mean((x - exact) ** 2)))


def main():
    grids = {"default": None, "linspace-int": linspace_integer_grid,
             "logSNR-real": samplers.uniform_logsnr_grid}
    print("steps  " + " ".join(f"{h:>18s}" for h in ["DDIM"] + [f"++({k}) {g}" for g in grids
                                                                   for k in (2, 3)]))
    for n in (10, 20, 40):
        row = [error(samplers.ddim_sample(MODEL, SCHED, X_T, num_steps=n),
                     ABAR[(n - 1) * (T // n)], 1.0)]
        for grid in grids.values():
            for k in (2, 3):
                x = samplers.dpm_solver_sample(MODEL, SCHED, X_T, num_steps=n, order=k, grid=grid)
                row.append(error(x, ABAR[-1], ABAR[0]))
        print(f"{n:5d}  " + " ".join(f"{e:18.4f}" for e in row))


if __name__ == "__main__":
    main()
