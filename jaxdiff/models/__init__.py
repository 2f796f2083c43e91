"""The networks, Flax NNX modules: the DDPM U-Net and its presets, the diffusion transformer
DiT, a small MLP denoiser for 2-D data; EDM's preconditioning; loading diffusers
``UNet2DModel`` weights; and :mod:`~jaxdiff.models.network`, which makes the network a config
names (a shipped one or a user's NNX or linen module) for the training driver."""

from jaxdiff.models.convert import from_diffusers as from_diffusers
from jaxdiff.models.dit import DiT as DiT
from jaxdiff.models.dit import DiTBlock as DiTBlock
from jaxdiff.models.dit import dit_cifar10 as dit_cifar10
from jaxdiff.models.dit import dit_digits as dit_digits
from jaxdiff.models.edm import edm_precondition as edm_precondition
from jaxdiff.models.edm import edm_scalings as edm_scalings
from jaxdiff.models.mlp import MLP as MLP
from jaxdiff.models.presets import ddpm_256 as ddpm_256
from jaxdiff.models.presets import ddpm_cifar10 as ddpm_cifar10
from jaxdiff.models.presets import ddpm_digits as ddpm_digits
from jaxdiff.models.presets import ncsn_digits as ncsn_digits
from jaxdiff.models.unet import AttnBlock as AttnBlock
from jaxdiff.models.unet import Downsample as Downsample
from jaxdiff.models.unet import FourierEmbedding as FourierEmbedding
from jaxdiff.models.unet import ResBlock as ResBlock
from jaxdiff.models.unet import SinusoidalEmbedding as SinusoidalEmbedding
from jaxdiff.models.unet import UNet as UNet
from jaxdiff.models.unet import Upsample as Upsample
from jaxdiff.models.unet import fourier_embedding as fourier_embedding
from jaxdiff.models.unet import sinusoidal_embedding as sinusoidal_embedding

__all__ = [
    "AttnBlock",
    "DiT",
    "DiTBlock",
    "Downsample",
    "FourierEmbedding",
    "MLP",
    "ResBlock",
    "SinusoidalEmbedding",
    "UNet",
    "Upsample",
    "ddpm_256",
    "ddpm_cifar10",
    "ddpm_digits",
    "dit_cifar10",
    "dit_digits",
    "edm_precondition",
    "edm_scalings",
    "fourier_embedding",
    "from_diffusers",
    "ncsn_digits",
    "sinusoidal_embedding",
]
