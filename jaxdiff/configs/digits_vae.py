"""A variational autoencoder (Kingma & Welling 2014) on scikit-learn's bundled 8x8 digits, for
the comparison with diffusion (``experiments/trilemma.py``).

A convolutional encoder and decoder (``jaxdiff.generative.vae.VAE``, 16-d latent), the decoder a
Gaussian discretised over the 256 pixel values, so that its bound is in the bits/dim of the
diffusion bound. The data, the budget (3,000 steps of 64 digits) and the EMA are the default
run's (``digits_ddpm``); the same driver trains it.

    jaxdiff train --config configs/digits_vae.py      # workdir ./runs/digits_vae
    jaxdiff eval --workdir runs/digits_vae            # -ELBO and IWAE (k = 1000) in bits/dim
"""

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_vae"
    config.family = "vae"
    del config.diffusion, config.loss
    config.model = dict(latent_dim=16, ch=32)
    config.vae = dict(num_samples=1, iwae_samples=1000)  # posterior samples: training, IWAE k
    config.optim.learning_rate = 2e-3
    config.sampling = dict(num_samples=100, decoder_noise=False)  # grids show decoder means
    return config
