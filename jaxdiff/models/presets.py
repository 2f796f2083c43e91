"""Named U-Nets: ``functools.partial`` objects of :class:`~jaxdiff.models.UNet`.

Call a preset to build the module, overriding any option: ``ddpm_cifar10(dropout=0.0,
rngs=nnx.Rngs(0))``. Each preset's ``in_channels`` and ``image_size`` are those of its data;
the training driver sets them from the data it trains on.
"""

import functools

from jaxdiff.models.unet import FourierEmbedding, UNet

__all__ = ["ddpm_256", "ddpm_cifar10", "ddpm_digits", "ncsn_digits"]

# Ho et al. (2020), App. B: the CIFAR-10 model, 35,746,307 parameters (the paper's 35.7M).
ddpm_cifar10 = functools.partial(
    UNet, in_channels=3, image_size=32, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1
)

# Ho et al. (2020), App. B: the 256x256 CelebA-HQ and LSUN models (the paper's 114M).
ddpm_256 = functools.partial(
    UNet, in_channels=3, image_size=256, ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,), dropout=0.0
)

# A small U-Net for scikit-learn's 8x8 digits that trains on a CPU in minutes.
ddpm_digits = functools.partial(
    UNet, in_channels=1, image_size=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.1, num_groups=8
)

# The same network as a noise-conditional score model: conditioned on sigma, output divided by it.
ncsn_digits = functools.partial(
    ddpm_digits, embedding=functools.partial(FourierEmbedding, scale=16.0), divide_by_sigma=True
)
