"""Guidance: classifier-free guidance (Ho & Salimans 2022), its guidance interval (Kynkäänniemi
et al. 2024) and autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version
of itself").

Every form mixes two predictions of one ``x_t`` at one ``t``: a strong one (the conditional
model, or the model itself) and a weak one (the unconditional model, or a smaller or shorter-trained
version of the model), with :func:`guided_output`. The guided model is a plain
``model_fn(x_t, t)``, so every sampler of :mod:`jaxdiff.samplers` takes it, whatever the network
predicts (eps, x0, v, velocity, score or EDM's denoiser: the mixture's weights sum to 1 and each
of these is affine in eps given x_t).

The guidance interval is given in the noise level sigma / alpha of the process (EDM's sigma, the
same number for every process: exp(-lambda / 2) with lambda the log-SNR), so one interval means
the same noise range whether the model runs on a DDPM schedule, EDM, VE or the linear flow.
Outside the interval the scale is 1 and only the strong model is evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._compile import PytreeFn, as_pytree_fn

__all__ = [
    "guided_output",
    "noise_level",
    "interval_scale",
    "classifier_free_guidance",
    "autoguidance",
]


def guided_output(cond: jnp.ndarray, uncond: jnp.ndarray, scale) -> jnp.ndarray:
    """The guided prediction (Ho & Salimans 2022, eq. 6, written with scale s = 1 + w):

    .. math:: \\tilde\\epsilon = s\\, \\epsilon(x_t, c) + (1 - s)\\, \\epsilon(x_t, \\varnothing)
        = (1 + w)\\, \\epsilon(x_t, c) - w\\, \\epsilon(x_t, \\varnothing)

    s = 1 is the conditional model, s = 0 the unconditional one (both exactly), s > 1 guides
    beyond it. The weights sum to 1, so the same mixture is right for eps-, x0-, v- and
    score-predicting models alike (each is affine in eps given x_t). Autoguidance (Karras et al.
    2024, eq. 2) is the same mixture with the weak model in place of the unconditional one.

    Args:
      cond, uncond: ``[B, ...]`` the strong (conditional) and weak (unconditional) outputs.
      scale: scalar (or broadcastable to ``[B, ...]``) guidance scale s.

    Returns:
      ``[B, ...]`` the guided output.
    """
    return scale * cond + (1.0 - scale) * uncond


def noise_level(process, t) -> jnp.ndarray:
    """The noise level sigma(t) / alpha(t) = exp(-lambda(t) / 2) of ``process`` at time ``t``
    (EDM's sigma, Karras et al. 2022, Sec. 4: x_t / alpha = x_0 + (sigma / alpha) eps).

    Args:
      process: any process with ``log_snr_at(t)`` (a ``schedules.Schedule`` with int or real
        timesteps, ``processes.EDM`` where it is t itself, VE, VPGamma, LinearFlow, ...).
      t: ``[B]`` the times the model is called with.
    """
    return jnp.exp(-0.5 * process.log_snr_at(t))


def interval_scale(scale, sigma, interval) -> jnp.ndarray:
    """The guidance interval (Kynkäänniemi et al. 2024, Sec. 3): the scale where
    ``lo < sigma <= hi``, and 1 (no guidance) elsewhere.

    Args:
      scale: the guidance scale s (scalar).
      sigma: ``[B]`` noise levels (:func:`noise_level`).
      interval: ``(lo, hi)`` in the same noise level, or ``None`` for guidance everywhere.

    Returns:
      ``[B]`` the scale of each example.
    """
    if interval is None:
        return jnp.broadcast_to(jnp.asarray(scale, sigma.dtype), sigma.shape)
    lo, hi = interval
    return jnp.where((sigma > lo) & (sigma <= hi), scale, jnp.ones((), sigma.dtype))


def _check_options(scale, interval, process) -> tuple:
    """The checked ``(scale, interval)`` as float32 arrays (traced values pass unchecked)."""
    if not isinstance(scale, jax.core.Tracer) and not np.all(np.asarray(scale) >= 0):
        raise ValueError(f"guidance scale must be >= 0 (1: no guidance), got {scale}")
    if interval is None:
        return jnp.asarray(scale, jnp.float32), None
    if process is None:
        raise ValueError(
            "a guidance interval is in the process's noise level sigma / alpha: pass process="
        )
    lo, hi = (float(v) for v in interval)
    if not 0.0 <= lo < hi:
        raise ValueError(f"guidance interval must be (lo, hi) with 0 <= lo < hi, got {interval}")
    return jnp.asarray(scale, jnp.float32), (jnp.float32(lo), jnp.float32(hi))


def _expand(v, x):
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def classifier_free_guidance(
    model_fn: Callable, y, *, scale, null_label=None, interval=None, process=None
) -> Callable:
    """Wraps a conditional model into the guided ``model_fn(x_t, t)`` of :func:`guided_output`.

    Inside the guidance interval (everywhere when ``interval`` is ``None``) each call evaluates
    ``model_fn(x, t, labels)`` once on the doubled batch: ``x_t`` with the labels ``y`` and
    ``x_t`` with the null label. Where no example of the batch is inside it, only the
    conditional half is evaluated.

    Args:
      model_fn: ``model_fn(x_t, t, y) -> output``, a model trained with label dropout.
      y: ``[B, ...]`` the labels (class ids, or embeddings) to condition on.
      scale: the guidance scale s >= 0 (1: conditional, 0: unconditional); may be traced.
      null_label: the label the model was trained to read as "no label" (e.g. the extra class
        ``num_classes``). If ``None``, the attribute ``model_fn.null_label`` is used.
      interval: ``(lo, hi)``: guide only where the noise level sigma / alpha of ``process`` is
        in (lo, hi] (Kynkäänniemi et al. 2024); ``None``: at every noise level.
      process: the process the model runs on (needed with ``interval``), e.g. the run's
        ``Schedule`` or ``processes.EDM()`` for a denoiser called with sigma.

    Returns:
      ``guided_fn(x_t, t) -> output`` for a batch of ``B`` examples.

    Raises:
      ValueError: if neither ``null_label`` nor ``model_fn.null_label`` names a null label, the
        null label does not broadcast to one label's shape, the scale is negative, the interval
        is not 0 <= lo < hi or has no process, or (at call time) ``x_t``'s batch is not ``y``'s.
    """
    if null_label is None:
        null_label = getattr(model_fn, "null_label", None)
    if null_label is None:
        raise ValueError(
            "classifier-free guidance needs the model's null label (the label it was trained "
            "to read as unconditional): pass null_label=..., or give model_fn a null_label "
            "attribute; this model declares none"
        )
    y = jnp.asarray(y)
    if y.ndim < 1:
        raise ValueError(f"y must be a batch of labels of shape [B, ...], got shape {y.shape}")
    try:
        np.broadcast_shapes(np.shape(null_label), y.shape[1:])
    except ValueError:
        raise ValueError(
            f"null_label of shape {np.shape(null_label)} does not broadcast to one label of "
            f"shape {y.shape[1:]}"
        ) from None
    scale, interval = _check_options(scale, interval, process)
    labels = jnp.concatenate([y, jnp.broadcast_to(jnp.asarray(null_label, y.dtype), y.shape)])
    return PytreeFn(_cfg, (as_pytree_fn(model_fn), labels, scale, interval, process))


def _cfg(model_fn, labels, scale, interval, process, x_t, t):
    """The guided output of :func:`classifier_free_guidance`."""
    if 2 * x_t.shape[0] != labels.shape[0]:
        raise ValueError(f"x_t has batch size {x_t.shape[0]} but y has {labels.shape[0] // 2} labels")
    t = jnp.broadcast_to(t, x_t.shape[:1])
    y, null = jnp.split(labels, 2)

    def both():
        out = model_fn(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), labels)
        return jnp.split(out, 2)

    return _mix(both, lambda: model_fn(x_t, t, y), scale, interval, process, t, x_t)


def autoguidance(model_fn: Callable, weak_fn: Callable, *, scale, interval=None, process=None):
    """Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of
    itself", eq. 2): :func:`guided_output` of the model and a weaker model of the same task,

    .. math:: D_w(x; \\sigma) = w\\, D_1(x; \\sigma) + (1 - w)\\, D_0(x; \\sigma)

    with D_1 the model and D_0 the weak one (smaller, or trained shorter); w = 1 is the model.
    It needs no labels, so it guides unconditional models too; for a conditional model pass both
    with their labels bound (``functools.partial(model, y=labels)``).

    Args:
      model_fn, weak_fn: ``f(x_t, t) -> output``, the same kind of output on the same process.
      scale: the guidance scale w >= 0; may be traced.
      interval, process: the guidance interval, as in :func:`classifier_free_guidance`.

    Returns:
      ``guided_fn(x_t, t) -> output``.
    """
    scale, interval = _check_options(scale, interval, process)
    return PytreeFn(
        _auto, (as_pytree_fn(model_fn), as_pytree_fn(weak_fn), scale, interval, process)
    )


def _auto(model_fn, weak_fn, scale, interval, process, x_t, t):
    t = jnp.broadcast_to(t, x_t.shape[:1])
    both = lambda: (model_fn(x_t, t), weak_fn(x_t, t))  # noqa: E731
    return _mix(both, lambda: model_fn(x_t, t), scale, interval, process, t, x_t)


def _mix(both, strong_only, scale, interval, process, t, x_t):
    """guided_output of ``both()`` at each example's interval scale; ``strong_only()`` when no
    example of the batch is inside the interval (the weak model is then not evaluated)."""
    if interval is None:
        return guided_output(*both(), scale)
    scales = interval_scale(scale, noise_level(process, t), interval)

    def guided(_):
        strong, weak = both()
        return guided_output(strong, weak, _expand(scales, strong).astype(strong.dtype))

    inside = jnp.any(scales != 1.0)
    return jax.lax.cond(inside, guided, lambda _: strong_only(), None)
