"""A GAN (Goodfellow et al. 2014) on a 2-D distribution with MLP generator and discriminator:
the mode-collapse benchmark (``experiments/mode_collapse.py``) against ``toy2d_ddpm`` at equal
steps and batch size.

The vanilla game by default (non-saturating loss, no R1, no instance noise), on the ring of 8
Gaussians; the seeds' long-tailed instance noise is
``--config.gan.instance_noise=0.05 --config.gan.noise=student_t``.

    jaxdiff train --config configs/toy2d_gan.py
    jaxdiff train --config configs/toy2d_gan.py --config.data.dataset=gaussian_grid
"""

import default


def get_config():
    config = default.get_config()
    config.name = "toy2d_gan"
    config.family = "gan"
    del config.diffusion, config.loss
    config.data.dataset = "gaussian_mixture"  # 8 modes on the unit circle; or gaussian_grid (5 x 5)
    config.model = dict(latent_dim=8, features=128)
    config.gan = dict(
        generator_loss="nonsaturating",
        d_steps=1,
        r1_weight=0.0,
        instance_noise=0.0,
        noise_anneal_steps=0,
        noise="gaussian",
        noise_df=1.0,
    )
    config.optim = dict(learning_rate=1e-3, warmup_steps=0, grad_clip=None, b1=0.5, b2=0.999, eps=1e-8)
    config.training.batch_size = 256
    config.training.num_steps = 4000
    config.training.ema_decay = 0.995
    config.training.ema_warmup = True
    config.training.log_every = 500
    config.training.checkpoint_every = 2000
    config.training.sample_every = 0
    config.sampling = dict(num_samples=2000)
    return config
