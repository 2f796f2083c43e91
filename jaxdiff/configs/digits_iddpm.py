"""Improved DDPM (Nichol & Dhariwal 2021) on the 8x8 digits, made for likelihood: the cosine
schedule (their eq. 17), learned variances in the range [beta~_t, beta_t] (eq. 15) and
L_hybrid = L_simple + 0.001 L_vlb (eq. 16), on the ``digits_ddpm`` network with dropout 0.2.

    jaxdiff train --config digits_iddpm
    jaxdiff eval --workdir runs/digits_iddpm          # held-out bits/dim with its parts
"""

import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_iddpm"
    config.model.dropout = 0.2
    config.diffusion.schedule = "cosine"
    config.diffusion.variance = "learned_range"
    config.loss = dict(name="hybrid", vlb_weight=0.001)
    config.sampling.sampler = "ddpm"
    return config
