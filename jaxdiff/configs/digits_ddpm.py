"""The default run: DDPM (Ho et al. 2020) on scikit-learn's bundled 8x8 digits.

Needs no download and trains on a 2-core CPU in three to five minutes: a small U-Net (the
``ddpm_digits`` preset narrowed to 16 channels and one residual block per level, 0.16M
parameters), the paper's linear schedule with T = 1000 and L_simple, and -- since the run is
only 3,000 steps of 64 images -- a higher learning rate and a shorter, warmed-up EMA than the
paper's. It trains on the digits "train" split (the evaluation holds out the "test" fifth).

    jaxdiff train                                     # this config, workdir ./runs/digits_ddpm
    jaxdiff train --config.training.num_steps=500     # a quicker look
"""

from jaxdiff.configs import default


def get_config():
    config = default.get_config()
    config.name = "digits_ddpm"
    config.data.dataset = "digits"
    config.model = dict(
        name="ddpm_digits",
        ch=16,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(),  # attention only in the middle (4x4)
        dropout=0.1,
        dtype="float32",
    )
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 100
    config.training.batch_size = 64
    config.training.num_steps = 3000
    config.training.ema_decay = 0.999
    config.training.ema_warmup = True
    config.training.log_every = 250
    config.training.checkpoint_every = 1000
    config.training.sample_every = 1500
    config.sampling.num_samples = 100
    return config
