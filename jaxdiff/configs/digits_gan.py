"""A DCGAN-style GAN (Goodfellow et al. 2014; Radford et al. 2016) on scikit-learn's bundled
8x8 digits, for the comparison with diffusion (``experiments/trilemma.py``).

Non-saturating generator loss, one discriminator step per generator step, Adam with
beta1 = 0.5 (DCGAN's), an R1 penalty on the data (Mescheder et al. 2018, gamma = 1) for stable
alternating updates; instance noise off (``--config.gan.instance_noise=0.1``, and
``--config.gan.noise=student_t`` for long tails). The data, the budget (3,000 steps of 64
digits) and the EMA are the default run's (``digits_ddpm``); the same driver trains it.

    jaxdiff train --config configs/digits_gan.py      # workdir ./runs/digits_gan
"""

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_gan"
    config.family = "gan"
    del config.diffusion, config.loss
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
    config.optim.update(learning_rate=2e-4, warmup_steps=0, grad_clip=None, b1=0.5)
    config.sampling = dict(num_samples=100)
    return config
