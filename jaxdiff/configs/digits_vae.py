"""A variational autoencoder (Kingma & Welling 2014) on scikit-learn's bundled 8x8 digits, for
the comparison with diffusion (``experiments/trilemma.py``).

A convolutional encoder and decoder (``jaxdiff.generative.vae.VAE``, 16-d latent), the decoder a
Gaussian discretised over the 256 pixel values, so that its bound is in the bits/dim of the
diffusion bound. Trained on the digits "train" split by the same driver as the diffusion runs.

    jaxdiff train --config configs/digits_vae.py      # workdir ./runs/digits_vae
    jaxdiff eval --workdir runs/digits_vae            # -ELBO and IWAE (k = 1000) in bits/dim
"""

import default


def get_config():
    config = default.get_config()
    config.name = "digits_vae"
    config.family = "vae"
    del config.diffusion, config.loss
    config.data.dataset = "digits"
    config.model = dict(latent_dim=16, ch=32)
    config.vae = dict(num_samples=1, iwae_samples=1000)
    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 100
    config.training.batch_size = 64
    config.training.num_steps = 3000
    config.training.ema_decay = 0.999
    config.training.ema_warmup = True
    config.training.log_every = 250
    config.training.checkpoint_every = 1000
    config.training.sample_every = 1500
    config.sampling = dict(num_samples=100, decoder_noise=False)  # grids show decoder means
    return config
