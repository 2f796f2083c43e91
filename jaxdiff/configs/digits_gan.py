"""A DCGAN-style GAN (Goodfellow et al. 2014; Radford et al. 2016) on scikit-learn's bundled
8x8 digits, for the comparison with diffusion (``experiments/trilemma.py``).

Non-saturating generator loss, one discriminator step per generator step, Adam with
beta1 = 0.5 (DCGAN's), a small R1 penalty on the data (Mescheder et al. 2018) for stable
alternating updates; instance noise off (``--config.gan.instance_noise=0.1``, and
``--config.gan.noise=student_t`` for long tails). Trained by the same driver as the diffusion
runs.

    jaxdiff train --config configs/digits_gan.py      # workdir ./runs/digits_gan
"""

import default


def get_config():
    config = default.get_config()
    config.name = "digits_gan"
    config.family = "gan"
    del config.diffusion, config.loss
    config.data.dataset = "digits"
    config.model = dict(latent_dim=32, ch=32)
    config.gan = dict(
        generator_loss="nonsaturating",  # nonsaturating | minimax
        d_steps=1,
        r1_weight=1.0,
        instance_noise=0.0,  # initial scale; 0: none
        noise_anneal_steps=0,  # linear decay to 0 over these steps; 0: constant
        noise="gaussian",  # gaussian | student_t
        noise_df=1.0,  # student_t degrees of freedom (1: Cauchy)
    )
    config.optim = dict(learning_rate=2e-4, warmup_steps=0, grad_clip=None, b1=0.5, b2=0.999, eps=1e-8)
    config.training.batch_size = 64
    config.training.num_steps = 3000
    config.training.ema_decay = 0.999
    config.training.ema_warmup = True
    config.training.log_every = 250
    config.training.checkpoint_every = 1000
    config.training.sample_every = 1500
    config.sampling = dict(num_samples=100)
    return config
