"""Improved DDPM on CIFAR-10 (Nichol & Dhariwal 2021): the cosine schedule (eq. 17), learned
variances Sigma = exp(v log beta_t + (1 - v) log beta~_t) (eq. 15) and L_hybrid = L_simple +
0.001 L_vlb (eq. 16), with T = 4000 as in their CIFAR-10 runs and dropout 0.3. The network is the
DDPM U-Net with twice the output channels; lr 1e-4, batch 128, EMA 0.9999, 500k steps.
"""

from jaxdiff.configs import cifar10_ddpm


def get_config():
    config = cifar10_ddpm.get_config()
    config.name = "cifar10_iddpm"
    config.model.dropout = 0.3
    config.diffusion.schedule = "cosine"
    config.diffusion.num_timesteps = 4000
    config.diffusion.variance = "learned_range"
    config.loss = dict(name="hybrid", vlb_weight=0.001)
    config.optim.learning_rate = 1e-4
    config.training.num_steps = 500_000
    config.sampling.sampler = "ddim"
    config.sampling.num_steps = 100
    return config
