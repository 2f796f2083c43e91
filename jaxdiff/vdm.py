"""Variational diffusion models (Kingma et al. 2021): the noise schedule gamma(t) = -log SNR(t),
the terms of the bound and Fourier features (the ancestral sampler is ``samplers.vdm_sample``).

The process is variance preserving with t in [0, 1] (data at t = 0, noise at t = 1):

.. math:: q(z_t | x) = \\mathcal N(\\alpha_t x, \\sigma_t^2 I),\\quad
    \\alpha_t^2 = \\mathrm{sigmoid}(-\\gamma(t)),\\ \\sigma_t^2 = \\mathrm{sigmoid}(\\gamma(t))

(their eqs. 1-5). A schedule is any increasing ``gamma_fn(t) -> gamma``, elementwise on a float
array: :func:`linear_gamma` (fixed) or :class:`LearnedGamma` (a monotone network, an
``nnx.Module``: the module is the function). The bound
-log p(x) <= prior + diffusion + decoder is :func:`jaxdiff.losses.vdm_loss`; this module holds
its terms, each per element, in nats:

* :func:`prior_kl`: KL(q(z_1 | x) || N(0, I));
* :func:`continuous_weight` (eq. 17) and :func:`discrete_weight` (the T-step loss, eq. 13
  written with eps): the weights of the eps-MSE of :func:`jaxdiff.losses.denoising_loss` that
  make the diffusion term;
* :func:`decoder_log_probs`: the discretised decoder p(x | z_0) over the 256 values of 8-bit
  data, and :func:`decoder_nll`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdiff.elbo import normal_kl
from jaxdiff.processes import vp_alpha_sigma

__all__ = [
    "GAMMA_MIN",
    "GAMMA_MAX",
    "NUM_VALUES",
    "alpha_sigma",
    "expand_like",
    "linear_gamma",
    "MonotoneDense",
    "LearnedGamma",
    "stratified_times",
    "gamma_and_derivative",
    "second_moment_tap",
    "prior_kl",
    "continuous_weight",
    "discrete_weight",
    "grid_values",
    "decoder_log_probs",
    "decoder_nll",
    "categorical_eps",
    "fourier_features",
    "FourierFeatures",
    "VDMModel",
]

# The end points of the paper's CIFAR-10 schedule (their App. H): SNR(0) = e^13.3, SNR(1) = e^-5.
GAMMA_MIN = -13.3
GAMMA_MAX = 5.0
NUM_VALUES = 256  # 8-bit data: x = 2 k / 255 - 1, k = 0..255


def expand_like(v, x):
    """A per-example ``[B]`` array shaped to broadcast against ``x`` ``[B, ...]``."""
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def alpha_sigma(gamma) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(alpha, sigma) of the variance-preserving process at gamma = -log SNR (Kingma et al.
    2021, eq. 4): alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma)."""
    return vp_alpha_sigma(-jnp.asarray(gamma))


# --- noise schedules -----------------------------------------------------------------------------


def linear_gamma(t, *, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX):
    """The fixed linear schedule gamma(t) = gamma_min + (gamma_max - gamma_min) t (Kingma et al.
    2021, Sec. 3.2 and App. H). Other end points as ``functools.partial(linear_gamma, ...)``."""
    return gamma_min + (gamma_max - gamma_min) * jnp.asarray(t, jnp.float32)


class MonotoneDense(nnx.Module):
    """A dense layer with non-negative weights |W| (Kingma et al. 2021, App. H): increasing in
    each input, so a stack of them with increasing activations is an increasing function."""

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        use_bias: bool = True,
        kernel_init: Callable = nnx.initializers.lecun_normal(),
        rngs: nnx.Rngs,
    ):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, features)))
        self.bias = nnx.Param(jnp.zeros((features,))) if use_bias else None

    def __call__(self, x):
        y = x @ jnp.abs(self.kernel[...])
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class LearnedGamma(nnx.Module):
    """The learned schedule of Kingma et al. (2021), Sec. 3.2 and App. H:

    .. math:: \\gamma(t) = \\gamma_0 + (\\gamma_1 - \\gamma_0)\\,
        \\frac{\\tilde\\gamma(t) - \\tilde\\gamma(0)}{\\tilde\\gamma(1) - \\tilde\\gamma(0)},
        \\quad \\tilde\\gamma(t) = l_1(t) + l_3(\\phi(l_2(l_1(t)))) / F

    with :class:`MonotoneDense` layers l_1 (1 output), l_2 (F sigmoid outputs) and l_3 (1 output,
    no bias), so gamma is increasing with end points exactly the parameters ``gamma_0`` and
    ``gamma_1``. :func:`jaxdiff.losses.vdm_loss` trains the end points on the bound and the
    shape between them to reduce the variance of the diffusion loss (their Sec. 5.3).

    Args:
      gamma_min, gamma_max: the initial gamma(0) and gamma(1).
      features: F, the width of the hidden layer (1024 in the paper).
      rngs: the initialisation keys.
    """

    def __init__(
        self,
        gamma_min: float = GAMMA_MIN,
        gamma_max: float = GAMMA_MAX,
        features: int = 1024,
        *,
        rngs: nnx.Rngs,
    ):
        self.features = features
        self.gamma_0 = nnx.Param(jnp.asarray(gamma_min, jnp.float32))
        self.gamma_1 = nnx.Param(jnp.asarray(gamma_max, jnp.float32))
        self.l1 = MonotoneDense(1, 1, kernel_init=nnx.initializers.ones, rngs=rngs)
        self.l2 = MonotoneDense(1, features, rngs=rngs)
        self.l3 = MonotoneDense(features, 1, use_bias=False, rngs=rngs)

    def _unnormalised(self, t):
        h = self.l1(t[..., None])
        return (h + self.l3(2.0 * (jax.nn.sigmoid(self.l2(h)) - 0.5)) / self.features)[..., 0]

    def __call__(self, t):
        t = jnp.asarray(t, jnp.float32)
        h_t, h_0, h_1 = (self._unnormalised(u) for u in (t, jnp.zeros(()), jnp.ones(())))
        gamma_0, gamma_1 = self.gamma_0[...], self.gamma_1[...]
        return gamma_0 + (gamma_1 - gamma_0) * (h_t - h_0) / (h_1 - h_0)


# --- the terms of the bound ----------------------------------------------------------------------


def stratified_times(rng: jax.Array, batch: int) -> jnp.ndarray:
    """Low-discrepancy times t_b = (u + b / B) mod 1, u ~ U(0, 1), ``[B]`` (Kingma et al. 2021,
    App. I.1): each t_b is uniform on [0, 1], and the batch covers [0, 1] evenly, which lowers
    the variance of the batch mean of the diffusion loss."""
    u = jax.random.uniform(rng, ())
    return jnp.mod(u + jnp.arange(batch, dtype=jnp.float32) / batch, 1.0)


def gamma_and_derivative(gamma_fn, t) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(gamma(t), dgamma/dt(t)) of an elementwise schedule, by one forward-mode pass."""
    t = jnp.asarray(t, jnp.float32)
    return jax.jvp(gamma_fn, (t,), (jnp.ones_like(t),))


@jax.custom_vjp
def second_moment_tap(shape):
    """The variance-reduction gradient of the schedule (Kingma et al. 2021, Sec. 5.3 and
    App. I.2), in one backward pass.

    Returns ``(shape, scale, unit)``: ``shape`` (a pytree of per-example ``[B]`` arrays)
    unchanged and two zero ``[B]`` arrays. Add ``scale * stop_gradient(2 L) + unit`` to the
    per-example loss L computed from ``shape``: the values stay the same, the cotangents that
    reach ``scale`` and ``unit`` are ``2 L w`` and ``w`` (w: the weight the reduction gives
    example b, e.g. 1/B for a mean), and the cotangent of ``shape`` is multiplied by their
    ratio 2 L. So the gradient through ``shape`` is that of the mean of L^2, the second moment
    whose minimisation minimises the variance when the mean of L does not depend on ``shape``
    (the continuous-time loss, which depends on the schedule only through its end points).
    """
    batch = jax.tree.leaves(shape)[0].shape[:1]
    return shape, jnp.zeros(batch), jnp.zeros(batch)


def _tap_fwd(shape):
    return second_moment_tap(shape), None


def _tap_bwd(_, cotangents):
    c_shape, c_scale, c_unit = cotangents
    nonzero = c_unit != 0
    twice_loss = jnp.where(nonzero, c_scale / jnp.where(nonzero, c_unit, 1.0), 0.0)
    return (jax.tree.map(lambda c: c * twice_loss, c_shape),)


second_moment_tap.defvjp(_tap_fwd, _tap_bwd)


def prior_kl(gamma_1, x) -> jnp.ndarray:
    """KL(q(z_1 | x) || N(0, I)) elementwise, in nats: the prior term of the bound (Kingma et
    al. 2021, eq. 11), with q(z_1 | x) = N(alpha_1 x, sigma_1^2 I)."""
    alpha_1, _ = alpha_sigma(gamma_1)
    return normal_kl(alpha_1 * x, jax.nn.log_sigmoid(gamma_1), 0.0, 0.0)


def continuous_weight(dgamma_t) -> jnp.ndarray:
    """The weight of the eps-MSE in the continuous-time diffusion loss at one t (Kingma et al.
    2021, eq. 17), in nats: L_infinity is the mean over t ~ U(0, 1) and eps ~ N(0, I) of

    .. math:: \\tfrac12\\, \\gamma'(t)\\, \\|\\epsilon - \\hat\\epsilon_\\theta(z_t; t)\\|^2

    so the weight is gamma'(t) / 2 (``dgamma_t``: gamma'(t))."""
    return 0.5 * dgamma_t


def discrete_weight(gamma_s, gamma_t, *, num_timesteps: int) -> jnp.ndarray:
    """The weight of the eps-MSE in the T-step diffusion loss at one step s = t - 1/T (Kingma et
    al. 2021, eq. 13 with x - x^ = (eps - eps^) sigma_t / alpha_t), in nats; L_T is the mean
    over the step i ~ U{1..T} (t = i / T) and eps of

    .. math:: \\tfrac{T}{2}\\,(\\mathrm{SNR}(s) - \\mathrm{SNR}(t))\\,(x - \\hat x)^2
        = \\tfrac{T}{2}\\,\\mathrm{expm1}(\\gamma(t) - \\gamma(s))\\,(\\epsilon - \\hat\\epsilon)^2
    """
    return 0.5 * num_timesteps * jnp.expm1(gamma_t - gamma_s)


def grid_values(dtype=jnp.float32) -> jnp.ndarray:
    """The 256 values of 8-bit data in [-1, 1], 2 k / 255 - 1 (as :func:`jaxdiff.data.
    to_model_range` maps them)."""
    return jnp.arange(NUM_VALUES, dtype=dtype) / 127.5 - 1.0


def _grid_log_likelihood(z, gamma) -> jnp.ndarray:
    """log q(z | x = v_k) + const for the 256 values v_k of each element, ``[..., 256]``:
    -(z / alpha - v_k)^2 / (2 sigma^2 / alpha^2), with sigma^2 / alpha^2 = e^gamma."""
    alpha, _ = alpha_sigma(gamma)
    inverse_variance = jnp.exp(-jnp.asarray(gamma))[..., None]
    return -0.5 * inverse_variance * ((z / alpha)[..., None] - grid_values(z.dtype)) ** 2


def decoder_log_probs(z_0, gamma_0) -> jnp.ndarray:
    """log p(x = v_k | z_0) for the 256 values v_k of each element: the discretised decoder of
    Kingma et al. (2021), App. C: q(z_0 | x) renormalised over the grid,

    .. math:: p(x = v_k | z_0) \\propto \\exp\\Big(-\\frac{(z_0 / \\alpha_0 - v_k)^2}
        {2\\, \\sigma_0^2 / \\alpha_0^2}\\Big), \\quad \\sigma_0^2 / \\alpha_0^2 = e^{\\gamma_0}

    so the 256 probabilities of each element sum to one.

    Args:
      z_0: ``[B, ...]`` latents at t = 0.
      gamma_0: gamma(0), a scalar or broadcastable to ``z_0``.

    Returns:
      ``[B, ..., 256]`` log probabilities.
    """
    return jax.nn.log_softmax(_grid_log_likelihood(z_0, gamma_0), axis=-1)


def decoder_nll(x, z_0, gamma_0) -> jnp.ndarray:
    """-log p(x | z_0) elementwise, in nats: the reconstruction term of the bound (Kingma et al.
    2021, eq. 11), for x in [-1, 1] on the 256-value grid (:func:`decoder_log_probs`)."""
    index = jnp.round((x + 1.0) * 127.5).astype(jnp.int32)
    log_probs = decoder_log_probs(z_0, gamma_0)
    return -jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]


def categorical_eps(logits, z, gamma) -> jnp.ndarray:
    """eps^ of a denoiser that is a distribution over each element's 256 values: the network's
    logits l_k(z, t) plus the element's own Gaussian likelihood log q(z_d | x_d = v_k),

    .. math:: p(x_d = v_k \\mid z) \\propto \\exp\\Big(l_{dk} - \\frac{(z_d / \\alpha - v_k)^2}
        {2\\, e^{\\gamma}}\\Big), \\quad \\hat x_d = \\sum_k p(x_d = v_k \\mid z)\\, v_k,
        \\quad \\hat\\epsilon = \\frac{z - \\alpha \\hat x}{\\sigma}

    With zero logits it is the exact posterior mean of independent, uniform 8-bit pixels; the
    logits carry what the rest of the image (and the data's own grid) says about each element.
    Kingma et al. (2021) give the network the fine scale of z through Fourier features
    (App. B); this head gives it exactly, so at high SNR the denoiser snaps to the grid as the
    per-pixel Bayes posterior does and the network learns only the dependence between elements.

    Args:
      logits: ``[B, ..., 256]`` the network's output, one logit per element and value.
      z: ``[B, ...]`` the noisy input z_t.
      gamma: gamma(t), broadcastable to ``z``.

    Returns:
      ``[B, ...]`` eps^.
    """
    alpha, sigma = alpha_sigma(gamma)
    probs = jax.nn.softmax(logits + _grid_log_likelihood(z, gamma), axis=-1)
    x_hat = jnp.sum(probs * grid_values(z.dtype), axis=-1)
    return (z - alpha * x_hat) / sigma


# --- network inputs ------------------------------------------------------------------------------


def fourier_features(z, exponents: Sequence[int]) -> jnp.ndarray:
    """sin(2^n pi z) and cos(2^n pi z) of every channel for each n in ``exponents`` (Kingma et
    al. 2021, Sec. 3.4 and App. B): the fine scale of z, which a network with smooth inputs
    resolves poorly at high SNR. ``[..., C] -> [..., 2 len(exponents) C]``."""
    freqs = jnp.pi * 2.0 ** jnp.asarray(exponents, z.dtype)
    angles = (z[..., None] * freqs).reshape(*z.shape[:-1], -1)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class FourierFeatures(nnx.Module):
    """Any network ``network(x, t, **kwargs)`` given x with its :func:`fourier_features`
    appended as extra channels (make the network for ``C (1 + 2 len(exponents))`` input
    channels and C output channels)."""

    def __init__(self, network: Callable, exponents: Sequence[int] = (6, 7)):
        self.network, self.exponents = network, tuple(exponents)

    def __call__(self, x, t, **kwargs):
        features = fourier_features(x, self.exponents)
        return self.network(jnp.concatenate([x, features], axis=-1), t, **kwargs)


class VDMModel(nnx.Module):
    """A VDM's two learned parts in one module: the noise predictor eps^(z_t; t) and the
    schedule gamma(t), so one train state, EMA and checkpoint carry both.

    ``model(z_t, u)`` is eps^ at the normalized gamma u = (gamma_t - gamma(0)) /
    (gamma(1) - gamma(0)) in [0, 1] (t itself for the linear schedule;
    :meth:`jaxdiff.processes.VPGamma.model_time`): VDM conditions its network on gamma_t
    (Kingma et al. 2021, App. B), which makes the continuous-time bound depend on a learned
    schedule through its end points only, so the schedule's shape is free to reduce the
    variance (their Sec. 5.3). The network is called with ``time_scale * u``, the range a
    sinusoidal embedding made for integer timesteps expects (wrap it in
    :class:`FourierFeatures` for those inputs); eps^ is its output itself (``head="eps"``),
    or with ``head="categorical"`` its ``256 C`` output channels as the logits of
    :func:`categorical_eps` at gamma_t = gamma(0) + (gamma(1) - gamma(0)) u, the same gamma_t
    the network sees; and ``model.gamma(t)`` is gamma(t): ``schedule`` (a
    :class:`LearnedGamma`) when given, else :func:`linear_gamma` between ``gamma_min`` and
    ``gamma_max``.

    Args:
      network: ``network(z, t, *, train, rngs)`` with output channels those of z (256 times
        them for the categorical head).
      schedule: a learned schedule module, or None for the fixed linear one.
      gamma_min, gamma_max: the linear schedule's end points (unused with ``schedule``).
      time_scale: the factor from t in [0, 1] to the network's time input.
      head: ``"eps"`` or ``"categorical"``.
    """

    def __init__(
        self,
        network: Callable,
        schedule: Callable | None = None,
        *,
        gamma_min: float = GAMMA_MIN,
        gamma_max: float = GAMMA_MAX,
        time_scale: float = 1000.0,
        head: str = "eps",
    ):
        self.network, self.schedule = network, schedule
        self.gamma_min, self.gamma_max = gamma_min, gamma_max
        self.time_scale, self.head = time_scale, head

    def gamma(self, t, *, train: bool = False, rngs=None):
        """gamma(t) = -log SNR(t); ``train`` and ``rngs`` are accepted (and unused) so that the
        training driver calls both methods alike."""
        del train, rngs
        if self.schedule is None:
            return linear_gamma(t, gamma_min=self.gamma_min, gamma_max=self.gamma_max)
        return self.schedule(t)

    def __call__(self, z, u, *, train: bool = False, rngs=None):
        u = jnp.asarray(u, jnp.float32)
        options = dict(train=train, rngs=rngs) if train else {}
        out = self.network(z, self.time_scale * u, **options)
        if self.head == "eps":
            return out
        gamma_0, gamma_1 = self.gamma(jnp.zeros(())), self.gamma(jnp.ones(()))
        gamma = gamma_0 + (gamma_1 - gamma_0) * u
        logits = out.reshape(*z.shape, NUM_VALUES)
        return categorical_eps(logits, z, expand_like(gamma, z))
