"""DDPM on MNIST (TFDS ``mnist``, 28x28: three U-Net levels of 28, 14 and 7).

The U-Net of the digits run, wider; the rest as in Ho et al. (2020). Needs the TFDS dataset
(prepared once with ``pip install 'jaxdiff[tfds]'``; see ``jaxdiff.data.tfds_source``).
"""

from jaxdiff.configs import default


def get_config():
    config = default.get_config()
    config.name = "mnist_ddpm"
    config.data.dataset = "mnist"
    config.model = dict(
        name="UNet",
        ch=64,
        ch_mult=(1, 2, 2),
        num_res_blocks=2,
        attn_resolutions=(7,),
        dropout=0.1,
        num_groups=32,
        dtype="float32",
    )
    config.optim.warmup_steps = 1000
    config.training.num_steps = 50_000
    config.training.ema_decay = 0.9995
    config.training.checkpoint_every = 5000
    config.training.sample_every = 10_000
    return config
