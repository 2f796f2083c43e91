"""The seeds' other generative models, on the same data as the diffusion models: a variational
autoencoder (Kingma & Welling 2014; :mod:`jaxdiff.generative.vae`) and a generative adversarial
network (Goodfellow et al. 2014; :mod:`jaxdiff.generative.gan`), as pure functions over
parameters plus their NNX networks.

``jaxdiff.generative.vae`` and ``jaxdiff.generative.gan`` are the namespaces (their names
overlap: both have a ``sample``-like entry point and network classes); the most used names are
also re-exported here.
"""

from jaxdiff.generative import gan, vae
from jaxdiff.generative.gan import (
    Discriminator as Discriminator,
    Generator as Generator,
    discriminator_loss as discriminator_loss,
    minimax_generator_loss as minimax_generator_loss,
    nonsaturating_generator_loss as nonsaturating_generator_loss,
    optimal_discriminator as optimal_discriminator,
    r1_penalty as r1_penalty,
)
from jaxdiff.generative.vae import (
    VAE as VAE,
    elbo_terms as elbo_terms,
    iwae_bound as iwae_bound,
    reparameterize as reparameterize,
    vae_bpd as vae_bpd,
)

__all__ = [
    "gan",
    "vae",
    "VAE",
    "Generator",
    "Discriminator",
    "reparameterize",
    "elbo_terms",
    "iwae_bound",
    "vae_bpd",
    "discriminator_loss",
    "minimax_generator_loss",
    "nonsaturating_generator_loss",
    "optimal_discriminator",
    "r1_penalty",
]
