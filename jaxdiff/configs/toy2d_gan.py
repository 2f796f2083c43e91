"""A GAN (Goodfellow et al. 2014) on a 2-D distribution with MLP generator and discriminator:
the mode-collapse benchmark (``experiments/mode_collapse.py``) against ``toy2d_ddpm`` at its
steps, batch size and EMA.

The vanilla game (``digits_gan``'s fields with no R1), on the ring of 8 Gaussians; the seeds'
long-tailed instance noise is ``--config.gan.instance_noise=0.05 --config.gan.noise=student_t``.

    jaxdiff train --config configs/toy2d_gan.py
    jaxdiff train --config configs/toy2d_gan.py --config.data.dataset=gaussian_grid
"""

from jaxdiff.configs import digits_gan
from jaxdiff.configs import toy2d_ddpm


def get_config():
    config = toy2d_ddpm.get_config()
    config.name = "toy2d_gan"
    config.family = "gan"
    del config.diffusion, config.loss
    config.data.dataset = "gaussian_mixture"  # 8 modes on the unit circle; or gaussian_grid (5 x 5)
    config.model = dict(latent_dim=8, features=128)
    config.gan = digits_gan.get_config().gan
    config.gan.r1_weight = 0.0
    config.optim.update(learning_rate=1e-3, warmup_steps=0, grad_clip=None, b1=0.5)
    config.sampling = dict(num_samples=2000)
    return config
