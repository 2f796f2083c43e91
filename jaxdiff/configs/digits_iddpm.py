"""Improved DDPM (Nichol & Dhariwal 2021) on the 8x8 digits, made for likelihood: the cosine
schedule (their eq. 17), learned variances in the range [beta~_t, beta_t] (eq. 15) and
L_hybrid = L_simple + 0.001 L_vlb (eq. 16), on the ``digits_ddpm`` network with dropout 0.2.

So as not to overfit the 1,438 training digits it trains on their ``fit`` part (1,294) and
holds out ``valid`` (144): every 500 steps the EMA model's bound on ``valid`` is estimated
(100 stratified timesteps, fixed noise); the best state is kept in ``WORKDIR/best/`` (what
``jaxdiff eval`` and ``sample`` load), and training stops after 3 evaluations without a new
best.

    jaxdiff train --config digits_iddpm
    jaxdiff eval --workdir runs/digits_iddpm          # held-out bits/dim with its parts
"""

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_iddpm"
    config.data.split = "fit"
    config.model.dropout = 0.2
    config.diffusion.schedule = "cosine"
    config.diffusion.variance = "learned_range"
    config.loss = dict(name="hybrid", vlb_weight=0.001)
    config.sampling.sampler = "ddpm"
    config.training.validation.update(every=500, split="valid", patience=3)
    return config
