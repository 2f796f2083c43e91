"""DDPM on a 2-D distribution (a swiss roll by default) with a small residual MLP denoiser.

    jaxdiff train --config configs/toy2d_ddpm.py
    jaxdiff train --config configs/toy2d_ddpm.py --config.data.dataset=gaussian_mixture
    python experiments/toy2d.py                       # samples next to the data, as a PNG
"""

from jaxdiff.configs import default


def get_config():
    config = default.get_config()
    config.name = "toy2d_ddpm"
    config.data.dataset = "swiss_roll"  # or gaussian_mixture, two_moons
    config.model = dict(name="mlp.MLP", features=128, num_blocks=3, dropout=0.0, dtype="float32")
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 100
    config.training.batch_size = 256
    config.training.num_steps = 4000
    config.training.ema_decay = 0.995
    config.training.ema_warmup = True
    config.training.log_every = 200
    config.training.checkpoint_every = 2000
    config.training.sample_every = 0
    config.sampling.num_samples = 2000
    config.sampling.clip_denoised = False  # the data are not confined to [-1, 1]
    return config
