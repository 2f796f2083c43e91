"""The default run: DDPM (Ho et al. 2020) on scikit-learn's bundled 8x8 digits.

Needs no download and trains on a laptop CPU in minutes: a small U-Net (``ddpm_digits``), the
paper's linear schedule with T = 1000 and L_simple, and -- since the run is a few thousand steps
long -- a higher learning rate and a shorter, warmed-up EMA than the paper's.

    jaxdiff train                                     # this config, workdir ./runs/digits_ddpm
    jaxdiff train --config.training.num_steps=500     # a quicker look
"""

import default


def get_config():
    config = default.get_config()
    config.name = "digits_ddpm"
    config.data.dataset = "digits"
    config.model.preset = "ddpm_digits"
    config.model.dropout = 0.1
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 200
    config.training.num_steps = 3000
    config.training.ema_decay = 0.999
    config.training.ema_warmup = True
    config.training.checkpoint_every = 1000
    config.training.sample_every = 1000
    config.sampling.num_samples = 100
    return config
