"""NCSN (Song & Ermon 2019) on the 8x8 digits: a noise-conditional score U-Net trained by
denoising score matching at geometric noise levels, sampled by annealed Langevin dynamics.

The noise levels follow the paper's recipe scaled to data in [-1, 1]: sigma_1 about the largest
distance between training images, sigma_L = 0.01, L = 10 levels.
"""

from jaxdiff.configs import default


def get_config():
    config = default.get_config()
    config.name = "digits_ncsn"
    config.data.dataset = "digits"
    config.model = dict(  # the digits DDPM's U-Net, conditioned on sigma (Fourier features)
        name="ncsn_digits",
        ch=16,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(),
        dropout=0.0,
        dtype="float32",
    )
    config.diffusion = dict(kind="ncsn", sigma_max=10.0, sigma_min=0.01, num_sigmas=10)
    config.loss = dict(name="dsm")
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 200
    config.training.num_steps = 3000
    config.training.ema_decay = 0.999
    config.training.ema_warmup = True
    config.training.batch_size = 64
    config.training.log_every = 250
    config.training.checkpoint_every = 1000
    config.training.sample_every = 1500
    config.sampling.sampler = "langevin"
    config.sampling.num_samples = 100
    config.sampling.steps_per_sigma = 100
    config.sampling.step_lr = 2e-5
    return config
