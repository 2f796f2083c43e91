"""The CIFAR-10 model of Ho et al. (2020), Sec. 4 and App. B, with the paper's hyperparameters:
T = 1000, linear betas 1e-4..0.02, L_simple, the 35.7M-parameter U-Net (``ddpm_cifar10``,
dropout 0.1), Adam at 2e-4 with 5000 warmup steps and gradient clipping at 1, batch 128,
EMA 0.9999, random horizontal flips, 800k steps. The paper reports FID 3.17 and IS 9.46.

Train on GPUs/TPUs (the batch is split over all devices); ``--config.model.dtype=bfloat16``
computes in bfloat16.
"""

from jaxdiff.configs import default


def get_config():
    config = default.get_config()
    config.name = "cifar10_ddpm"
    config.data.dataset = "cifar10"
    config.data.random_flip = True
    config.model = dict(name="ddpm_cifar10", dropout=0.1, dtype="float32")
    return config
