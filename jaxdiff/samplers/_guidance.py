"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance").

One network trained with its label dropped (replaced by a null label) some of the time is both
a conditional and an unconditional model; sampling mixes the two predictions. The guided model
is a plain ``model_fn(x_t, t)``, so every sampler of :mod:`jaxdiff.samplers` takes it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from jaxdiff._compile import PytreeFn, as_pytree_fn

__all__ = ["guided_output", "classifier_free_guidance"]


def guided_output(cond: jnp.ndarray, uncond: jnp.ndarray, scale) -> jnp.ndarray:
    """The guided prediction (Ho & Salimans 2022, eq. 6, written with scale s = 1 + w):

    .. math:: \\tilde\\epsilon = s\\, \\epsilon(x_t, c) + (1 - s)\\, \\epsilon(x_t, \\varnothing)
        = (1 + w)\\, \\epsilon(x_t, c) - w\\, \\epsilon(x_t, \\varnothing)

    s = 1 is the conditional model, s = 0 the unconditional one (both exactly), s > 1 guides
    beyond it. The weights sum to 1, so the same mixture is right for eps-, x0-, v- and
    score-predicting models alike (each is affine in eps given x_t).

    Args:
      cond, uncond: ``[B, ...]`` the conditional and unconditional outputs.
      scale: scalar (or broadcastable to ``[B, ...]``) guidance scale s.

    Returns:
      ``[B, ...]`` the guided output.
    """
    return scale * cond + (1.0 - scale) * uncond


def classifier_free_guidance(
    model_fn: Callable, y, *, scale, null_label=None
) -> Callable:
    """Wraps a conditional model into the guided ``model_fn(x_t, t)`` of :func:`guided_output`.

    Each call evaluates ``model_fn(x, t, labels)`` once on the doubled batch: ``x_t`` with the
    labels ``y`` and ``x_t`` with the null label.

    Args:
      model_fn: ``model_fn(x_t, t, y) -> output``, a model trained with label dropout.
      y: ``[B, ...]`` the labels (class ids, or embeddings) to condition on.
      scale: the guidance scale s (1: conditional, 0: unconditional); may be traced.
      null_label: the label the model was trained to read as "no label" (e.g. the extra class
        ``num_classes``). If ``None``, the attribute ``model_fn.null_label`` is used.

    Returns:
      ``guided_fn(x_t, t) -> output`` for a batch of ``B`` examples.

    Raises:
      ValueError: if neither ``null_label`` nor ``model_fn.null_label`` names a null label,
        the null label does not broadcast to one label's shape, or (at call time) ``x_t``'s
        batch is not ``y``'s.
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
    labels = jnp.concatenate([y, jnp.broadcast_to(jnp.asarray(null_label, y.dtype), y.shape)])

    return PytreeFn(_guided, (as_pytree_fn(model_fn), labels, scale))


def _guided(model_fn, labels, scale, x_t, t):
    """The guided output of :func:`classifier_free_guidance` on the doubled batch."""
    if 2 * x_t.shape[0] != labels.shape[0]:
        raise ValueError(f"x_t has batch size {x_t.shape[0]} but y has {labels.shape[0] // 2} labels")
    t = jnp.broadcast_to(t, x_t.shape[:1])
    out = model_fn(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), labels)
    cond, uncond = jnp.split(out, 2)
    return guided_output(cond, uncond, scale)
