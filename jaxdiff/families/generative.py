"""The VAE and the GAN as model families (:class:`jaxdiff.engine.family.Family`): trained by the
engine's driver, sampled by ``jaxdiff sample``, the VAE's bound reported by ``jaxdiff eval``.

``config.family = "vae"`` or ``"gan"`` selects them (``configs/digits_vae.py``,
``configs/digits_gan.py``); the names of a config are resolved into callables here, once.

VAE config fields: ``model.latent_dim``, ``model.ch``; ``vae.num_samples`` (posterior samples
per example in the training bound), ``vae.iwae_samples`` (k of the evaluation's IWAE bound);
``sampling.decoder_noise``. The state is a :class:`jaxdiff.train.TrainState` and the step
the driver's own :func:`jaxdiff.train.train_step` on the negative ELBO in bits/dim.

GAN config fields: ``model.latent_dim``, ``model.ch`` (images) or ``model.features`` (points);
``gan.generator_loss`` (``nonsaturating`` | ``minimax``), ``gan.d_steps``, ``gan.r1_weight``,
``gan.instance_noise`` (its initial scale; 0 for none), ``gan.noise_anneal_steps`` (linear
decay to 0 over that many steps; 0 keeps it constant), ``gan.noise`` (``gaussian`` |
``student_t``) and ``gan.noise_df``. Both players use ``optim``'s Adam.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdiff import data as data_lib
from jaxdiff.engine.checks import Checker
from jaxdiff.engine.family import Estimate, Family, run_keys
from jaxdiff.engine.step import create_train_state, learning_rate_schedule, make_optimizer, train_step
from jaxdiff.generative import gan, vae
from jaxdiff.models.network import NNXNetwork

__all__ = [
    "GENERATOR_LOSSES",
    "INSTANCE_NOISES",
    "vae_model",
    "vae_family",
    "gan_models",
    "gan_family",
]

GENERATOR_LOSSES = {
    "nonsaturating": gan.nonsaturating_generator_loss,
    "minimax": gan.minimax_generator_loss,
}
INSTANCE_NOISES = {
    "gaussian": lambda df: jax.random.normal,
    "student_t": lambda df: functools.partial(gan.student_t_noise, df=df),
}


def _optimizer(config):
    """Adam of ``config.optim`` and the learning-rate schedule it follows (logged as lr)."""
    ocfg = config.optim.to_dict()
    schedule = learning_rate_schedule(ocfg.pop("learning_rate"), ocfg.pop("warmup_steps", 0))
    return make_optimizer(learning_rate=schedule, **ocfg), schedule


def _check_images(family: str, data_shape) -> None:
    if len(data_shape) != 3 or data_shape[0] % 4 or data_shape[1] % 4:
        raise ValueError(
            f"config.family={family!r} needs images [H, W, C] with H and W divisible by 4, "
            f"got examples of shape {tuple(data_shape)}"
        )


def _check_vae(config) -> None:
    """The VAE's own fields (the driver checks the shared ones, :mod:`jaxdiff.engine.checks`)."""
    c = Checker(config)
    c.int("model.latent_dim", minimum=1)
    c.int("model.ch", minimum=1)
    c.int("vae.num_samples", minimum=1)
    c.int("vae.iwae_samples", minimum=1)
    c.boolean("sampling.decoder_noise")


def _check_gan(config) -> None:
    """The GAN's own fields."""
    c = Checker(config)
    c.int("model.latent_dim", minimum=1)
    c.int("model.ch", minimum=1)
    c.int("model.features", minimum=1)
    c.one_of("gan.generator_loss", sorted(GENERATOR_LOSSES))
    c.int("gan.d_steps", minimum=1)
    c.real("gan.r1_weight", low=0.0)
    c.real("gan.instance_noise", low=0.0)
    c.int("gan.noise_anneal_steps", minimum=0)
    c.one_of("gan.noise", sorted(INSTANCE_NOISES))
    c.real("gan.noise_df", low=0.0, low_open=True)


def vae_model(config, data_shape) -> NNXNetwork:
    """The :class:`~jaxdiff.generative.vae.VAE` of ``config.model`` for images of ``data_shape``,
    as the driver holds a network (its parameters a plain dict)."""
    _check_images("vae", data_shape)

    def make(rngs):
        return vae.VAE(latent_dim=config.model.latent_dim, ch=config.model.ch,
                       image_shape=tuple(data_shape), rngs=rngs)

    return NNXNetwork(make)


def _vae_loss(network, num_samples, params, batch, rng):
    """-ELBO in bits/dim per example (:func:`jaxdiff.generative.vae.vae_bpd`)."""
    encode_fn, log_likelihood_fn = vae.bind(network.module(params))
    x = data_lib.to_model_range(batch["x"])
    return vae.vae_bpd(encode_fn, log_likelihood_fn, x, rng, num_samples=num_samples)["total"]


def vae_family(config, data_shape) -> Family:
    """The VAE of ``config`` as a :class:`~jaxdiff.engine.family.Family`."""
    _check_vae(config)
    network = vae_model(config, data_shape)
    tx, schedule = _optimizer(config)
    _, run_key, _ = run_keys(config.seed)

    def init_state(key):
        return create_train_state(network.init(key)["params"], tx, run_key)

    def sample(state, rng, num):
        noise = config.sampling.get("decoder_noise", False)
        return vae.sample_prior(network.module(state.ema_params), rng, num, decoder_noise=noise)

    step = functools.partial(
        train_step,
        loss_fn=functools.partial(_vae_loss, network, config.vae.num_samples),
        ema=config.training.ema_decay,
        ema_warmup=config.training.ema_warmup,
        lr_schedule=schedule,
    )

    def bound(*, iwae_samples=None) -> Estimate:
        """-ELBO (prior = the KL, decoder = -E_q log p(x | z), no diffusion term) and the IWAE
        bound of k = ``iwae_samples`` (``config.vae.iwae_samples`` when None; Burda et al.
        2016)."""
        k = iwae_samples or config.vae.iwae_samples
        return Estimate(functools.partial(_vae_bound, network, k), "VAE -ELBO", {"iwae_samples": k})

    return Family(init_state, step, sample, tuple(data_shape), bound=bound)


def _vae_bound(network, iwae_samples, state, x0, rng) -> dict:
    """:func:`~jaxdiff.generative.vae.vae_bpd` of the EMA parameters, with the IWAE bound."""
    encode_fn, log_likelihood_fn = vae.bind(network.module(state.ema_params))
    out = vae.vae_bpd(encode_fn, log_likelihood_fn, x0, rng, iwae_samples=iwae_samples)
    return dict(out, diffusion=jnp.zeros_like(out["total"]))


def gan_models(config, data_shape):
    """``(generator, discriminator)`` constructors (``rngs -> nnx.Module``) of
    ``config.model``: the DCGAN-style pair for images, the MLP pair for points ``[D]``."""
    mcfg = config.model
    if len(data_shape) == 1:
        return (
            functools.partial(gan.MLPGenerator, latent_dim=mcfg.latent_dim,
                              features=mcfg.features, out_features=data_shape[0]),
            functools.partial(gan.MLPDiscriminator, in_features=data_shape[0],
                              features=mcfg.features),
        )
    _check_images("gan", data_shape)
    return (
        functools.partial(gan.Generator, latent_dim=mcfg.latent_dim, ch=mcfg.ch,
                          image_shape=tuple(data_shape)),
        functools.partial(gan.Discriminator, image_shape=tuple(data_shape), ch=mcfg.ch),
    )


def _gan_step(pure_step, state, batch, rng):
    """The driver's step: batch scaled to the model range; ``loss`` is the discriminator's
    (-V(D, G), log 4 ~ 1.386 at equilibrium)."""
    state, metrics = pure_step(state, data_lib.to_model_range(batch["x"]), rng)
    return state, {"loss": metrics["d_loss"], **metrics}


def gan_family(config, data_shape) -> Family:
    """The GAN of ``config`` as a :class:`~jaxdiff.engine.family.Family`."""
    _check_gan(config)
    gcfg = config.gan
    make_generator, make_discriminator = gan_models(config, data_shape)
    tx, _ = _optimizer(config)
    noise_scale = None
    if gcfg.instance_noise:
        noise_scale = functools.partial(
            gan.linear_decay, initial=gcfg.instance_noise, num_steps=gcfg.noise_anneal_steps
        )
    pure_step = functools.partial(
        gan.train_step,
        generator_loss=GENERATOR_LOSSES[gcfg.generator_loss],
        d_steps=gcfg.d_steps,
        r1_weight=gcfg.r1_weight,
        noise_scale=noise_scale,
        noise_fn=INSTANCE_NOISES[gcfg.noise](gcfg.noise_df),
        ema=config.training.ema_decay,
        ema_warmup=config.training.ema_warmup,
    )

    def init_state(key):
        g_key, d_key = jax.random.split(key)
        generator = make_generator(rngs=nnx.Rngs(params=g_key))
        discriminator = make_discriminator(rngs=nnx.Rngs(params=d_key))
        return gan.init_state(generator, discriminator, g_tx=tx, d_tx=tx)

    def sample(state, rng, num):
        return gan.sample(nnx.merge(state.g_graph, state.ema_params), rng, num)

    return Family(
        init_state=init_state,
        train_step=functools.partial(_gan_step, pure_step),
        sample=sample,
        data_shape=tuple(data_shape),
    )
