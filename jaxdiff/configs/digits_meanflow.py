"""MeanFlow (Geng et al. 2025) on scikit-learn's 8x8 digits: the digits DDPM's U-Net as the
average velocity u(z, r, t) of the linear path, the gap t - r fed as one more input channel,
trained with the MeanFlow identity (the total derivative by ``jax.jvp``), logit-normal (r, t)
with r != t for a quarter of them, and the adaptive weight (p = 1). One network evaluation per
sample (``--steps 2`` or ``4``: equal steps of the average velocity).

    jaxdiff train --config digits_meanflow             # ~0.12 CPU-s a step: <= 3 min on 2 cores
    jaxdiff sample --workdir runs/digits_meanflow --steps 1
    jaxdiff eval --workdir runs/digits_meanflow --num_samples 500
"""

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_meanflow"
    config.family = "fewstep"
    del config.diffusion, config.loss
    config.fewstep = dict(method="meanflow")
    config.meanflow = dict(
        time_mean=-0.4,  # logit-normal (r, t) of their Table 1
        time_std=1.0,
        ratio=0.25,  # the share of pairs with r != t
        power=1.0,  # the adaptive weight 1 / (||Delta||^2 + c)^p
        c=1e-3,
        time_scale=1.0,  # the network sees time_scale * t (the jvp differentiates through it)
    )
    config.optim.learning_rate = 1e-3
    config.training.num_steps = 3000
    config.training.ema_decay = 0.999
    config.sampling = dict(num_samples=100, num_steps=1)
    return config
