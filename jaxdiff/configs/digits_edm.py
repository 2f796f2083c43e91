"""EDM (Karras et al. 2022) on scikit-learn's 8x8 digits: the digits DDPM's U-Net behind EDM's
preconditioning (eq. 7, Table 1), trained with EDM's loss (log-normal sigma, lambda(sigma)),
sampled with Alg. 1 (deterministic Heun, 18 steps on the Karras grid: 35 network evaluations).

    jaxdiff train --config digits_edm                 # ~3-5 min on a 2-core CPU
    jaxdiff sample --workdir runs/digits_edm --num 100 --steps 18
    jaxdiff eval --workdir runs/digits_edm            # the ODE likelihood in bits/dim

Alg. 2's churn is ``--config.sampling.churn=...`` (with ``s_tmin``, ``s_tmax``, ``s_noise``).
"""

import math

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_edm"
    config.diffusion = dict(kind="edm", sigma_min=0.002, sigma_max=80.0, rho=7.0, sigma_data=0.5)
    config.loss = dict(name="edm", p_mean=-1.2, p_std=1.2)
    config.sampling.sampler = "edm"
    config.sampling.num_steps = 18
    config.sampling.method = "heun"
    config.sampling.churn = 0.0
    config.sampling.s_tmin = 0.0
    config.sampling.s_tmax = math.inf
    config.sampling.s_noise = 1.0
    return config
