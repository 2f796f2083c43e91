"""The diffusion family: a config's names resolved into callables, once.

:func:`build_experiment` is the only place a name of the config is looked up: the model
preset, the kind of run (:data:`KINDS`, keyed by ``config.diffusion.kind``: its
:class:`~jaxdiff.processes.GaussianProcess` and what else it needs, a :class:`Kind`), the
objective (keyed by ``config.loss.name`` in the kind's ``objectives``), the optimizer and the
sampler (:data:`SAMPLERS`). :func:`family` wraps the result as the
:class:`~jaxdiff.engine.family.Family` the engine trains, samples and evaluates.

A new noise process is its GaussianProcess subclass: ``config.diffusion.kind =
"package.module:Class"`` trains it (:func:`gaussian`: L_simple, the solvers of any process, the
probability-flow likelihood), and one line ``"name": gaussian(Class)`` in :data:`KINDS` gives
it a name. A new objective is one function ``(config, process) -> objective(model_fn, x0, rng)
-> [B]`` in its kind's ``objectives``; a new sampler one entry of :data:`SAMPLERS` (and its
name in the ``samplers`` of the kinds it fits).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxdiff import data as data_lib
from jaxdiff import elbo, losses, models, processes, samplers, schedules, vdm
from jaxdiff.diffusion import PREDICTIONS, split_learned_variance
from jaxdiff.engine.checks import Checker
from jaxdiff.engine.family import Estimate, Family, run_keys
from jaxdiff.engine.loop import compile_train_step, train_source
from jaxdiff.models import network as network_lib
from jaxdiff.engine.step import (
    TrainState,
    create_train_state,
    learning_rate_schedule,
    make_optimizer,
    train_step,
)

__all__ = [
    "Experiment",
    "Kind",
    "KINDS",
    "gaussian",
    "resolve_kind",
    "SAMPLERS",
    "build_experiment",
    "build_sampler",
    "sampler",
    "Settings",
    "SamplingOptions",
    "initial_state",
    "make_loss_fn",
    "make_train_step",
    "family",
    "diffusion_family",
    "likelihood_parts",
]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The fields of a run's config that it reads after it is built (its bound, likelihood,
    validation and samplers), resolved once by :meth:`of`.

    Attributes:
      kind: ``config.diffusion.kind`` (for labels and messages).
      prediction: what the network predicts (``config.diffusion.prediction``).
      variance: its reverse variance (``config.diffusion.variance``; DDPM).
      sigma_data: EDM's preconditioning (``config.diffusion.sigma_data``).
      rho: the exponent of the Karras grid (``config.diffusion.rho``).
      num_timesteps: ``config.diffusion.num_timesteps`` (a VDM's T-step model; None:
        continuous time).
      validation_calls: model calls per example of the held-out bound
        (``config.training.validation.num_timesteps``).
    """

    kind: str
    prediction: str = "eps"
    variance: str = "fixed_small"
    sigma_data: float = 0.5
    rho: float = 7.0
    num_timesteps: int | None = None
    validation_calls: int = 100

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> Settings:
        d = config.diffusion
        validation = config.training.get("validation") or {}
        return cls(
            kind=str(d.kind), prediction=d.get("prediction", "eps"),
            variance=d.get("variance", "fixed_small"), sigma_data=d.get("sigma_data", 0.5),
            rho=d.get("rho", 7.0), num_timesteps=d.get("num_timesteps"),
            validation_calls=validation.get("num_timesteps", 100),
        )


# The config field that holds each sampler's number of steps (``num_steps`` for the others):
# ``num_steps=N`` sets it, so ``--steps N`` means the same for every sampler.
STEP_FIELDS = {"ddpm": "ddpm_num_steps", "langevin": "steps_per_sigma"}


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """``config.sampling`` resolved (:meth:`of`), with the run's :class:`Settings` the
    samplers read: what an entry of :data:`SAMPLERS` takes. Each field is the config's of the
    same name (see ``jaxdiff/configs/default.py``); ``churn``, ``s_tmin``, ``s_tmax`` and
    ``s_noise`` are EDM's Alg. 2."""

    sampler: str = "ddpm"
    num_steps: int = 50
    ddpm_num_steps: int | None = None
    eta: float = 0.0
    clip_denoised: bool = True
    order: int = 2
    method: str = "heun"
    steps_per_sigma: int = 100
    step_lr: float = 2e-5
    churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    settings: Settings = Settings("ddpm")

    @classmethod
    def of(cls, sampling: ml_collections.ConfigDict, settings: Settings) -> SamplingOptions:
        """``config.sampling``'s fields of this class (the others, e.g. ``num_samples``, are
        the driver's)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"settings"}
        return cls(**{k: v for k, v in dict(sampling).items() if k in names}, settings=settings)

    def replace(self, **overrides) -> SamplingOptions:
        """These options with ``overrides`` (None: unchanged); ``num_steps`` sets the chosen
        sampler's step count, whatever its field (:data:`STEP_FIELDS`: the respaced steps of
        ddpm, the steps per noise level of langevin).

        Raises:
          ValueError: an override that is no sampling option, or an unknown sampler.
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        names = {f.name for f in dataclasses.fields(self)} - {"settings"}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"{unknown[0]} is no sampling option (they are {', '.join(sorted(names))})")
        sampler = overrides.get("sampler", self.sampler)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(sorted(SAMPLERS))}, got {sampler!r}")
        if "num_steps" in overrides:
            overrides[STEP_FIELDS.get(sampler, "num_steps")] = overrides.pop("num_steps")
        return dataclasses.replace(self, **overrides)

    @property
    def prediction(self) -> str:
        return self.settings.prediction

    @property
    def variance(self) -> str:
        return self.settings.variance


class Experiment(NamedTuple):
    """A config resolved into callables.

    Attributes:
      model: the network (:mod:`jaxdiff.models.network`: an NNX module's graph and state, or
        a linen module); called as ``model.apply(variables, x, c, train=...)``.
      process: the run's :class:`~jaxdiff.processes.GaussianProcess`: a
        :class:`~jaxdiff.schedules.Schedule` (``diffusion.kind = "ddpm"``), NCSN's
        :class:`~jaxdiff.processes.VELevels`, :class:`~jaxdiff.processes.EDM`,
        :class:`~jaxdiff.processes.LinearFlow` (``"flow"``), a :class:`~jaxdiff.processes.
        VPGamma`; for a process learned with the network (VDM's schedule) the one it starts
        from: :meth:`process_of` gives the trained one.
      objective: ``objective(model_fn, x0, rng) -> [B]`` per-example losses.
      prior: ``prior(rng, shape) -> x_T``, the sampler's starting point.
      data_shape: the shape of one example (e.g. ``(8, 8, 1)``).
      tx: the optax transformation.
      lr_schedule: the learning-rate schedule object ``tx`` was built with (logged as ``lr``).
      time_input: ``time_input(batch) -> [batch]``, a dummy conditioning input of the right
        dtype (int32 timesteps or float noise levels), for initialising the model.
      kind: the :class:`Kind` of ``config.diffusion.kind``.
      settings: the config's fields read after the build (:class:`Settings`).
    """

    model: Any
    process: processes.GaussianProcess
    objective: Callable
    prior: Callable
    data_shape: tuple[int, ...]
    tx: optax.GradientTransformation
    lr_schedule: optax.Schedule | None = None
    time_input: Callable = lambda n: jnp.zeros((n,), jnp.int32)  # noqa: E731
    kind: Kind | None = None
    settings: Settings | None = None

    def process_of(self, model_fn) -> processes.GaussianProcess:
        """The process of the model ``model_fn`` (``partial(model.apply, variables)``): the
        run's, or one learned with the network (a VDM's schedule) at these parameters."""
        if self.kind is None or self.kind.learned is None:
            return self.process
        return self.kind.learned(model_fn)


def _normal_prior(process):
    """x_T ~ N(0, I), where the reverse chain starts (Ho et al. 2020, Alg. 2); EDM's sampler
    scales it to its first level itself."""
    return lambda rng, shape: jax.random.normal(rng, shape)


def _uniform_prior(process):
    """Uniform noise over the data range, where Song & Ermon (2019) start annealed Langevin."""
    return lambda rng, shape: jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)


def _own_prior(process):
    """The process's prior N(0, prior_std^2 I) at ``t_noise``."""
    return process.sample_prior


def _float_time(n):
    return jnp.ones((n,), jnp.float32)  # a noise level or a time in [0, 1]


def _int_time(n):
    return jnp.zeros((n,), jnp.int32)  # a timestep


class Kind(NamedTuple):
    """What a value of ``config.diffusion.kind`` names: the
    :class:`~jaxdiff.processes.GaussianProcess` its fields build, and what else a run of it
    needs that is not the process. ``process`` and ``objectives`` read the config when the run
    is built; the others take its :class:`Settings` first.

    Attributes:
      process: ``process(config.diffusion) -> GaussianProcess``.
      objectives: ``config.loss.name`` -> ``(config, process) -> objective(model_fn, x0, rng)
        -> [B]``.
      samplers: the entries of :data:`SAMPLERS` that fit it.
      prior: ``prior(process) -> prior(rng, shape)``, where sampling starts (default: the
        process's own N(0, prior_std^2 I)).
      time_input: ``time_input(n)``, a dummy time input of the network's dtype for its
        initialisation (float unless the network indexes timesteps).
      learned: for a process learned with the network (VDM's schedule): ``learned(model_fn) ->
        GaussianProcess`` of the parameters bound in ``model_fn``; ``process`` is then the
        one the network starts from.
      bound: ``bound(settings, model_fn, process, x0, rng, **options) -> dict`` of ``[B]``
        bits/dim, the kind's variational bound (``total``, ``prior``, ``diffusion``,
        ``decoder``); None without one.
      likelihood: ``likelihood(settings, model_fn, process, x0, rng, **options) -> dict``, a
        change of variables' result (:func:`~jaxdiff.samplers.change_of_variables`); None
        without one.
      validation: ``validation(settings, model_fn, process, x0, rng) -> [B]``, the held-out
        bound of early stopping from ``settings.validation_calls`` model calls per example;
        None without one.
      wrap: ``wrap(config.diffusion, make_network, data_shape)`` makes the model from the
        network of ``config.model`` (``make_network(input_shape, out_channels)``), for a kind
        with learned parts of its own.
      check: ``check(checker)`` checks the kind's own fields of the config
        (:class:`~jaxdiff.engine.checks.Checker`).
    """

    process: Callable
    objectives: dict[str, Callable]
    samplers: tuple[str, ...]
    prior: Callable = _own_prior
    time_input: Callable = _float_time
    learned: Callable | None = None
    bound: Callable | None = None
    likelihood: Callable | None = None
    validation: Callable | None = None
    wrap: Callable | None = None
    check: Callable[[Checker], None] = lambda c: None


_VARIANCES = ("fixed_small", "fixed_large", "learned", "learned_range")
_LEARNED = ("learned", "learned_range")


def _check_ddpm(c: Checker) -> None:
    c.one_of("diffusion.schedule", sorted(schedules._NAMED))
    c.int("diffusion.num_timesteps", minimum=1)
    c.one_of("diffusion.prediction", PREDICTIONS)
    c.one_of("diffusion.variance", _VARIANCES)
    c.int("sampling.ddpm_num_steps", minimum=1, optional=True)
    num_steps, total = c.get("sampling.ddpm_num_steps"), c.get("diffusion.num_timesteps")
    if isinstance(num_steps, int) and num_steps > total:
        c.fail("sampling.ddpm_num_steps", f"at most config.diffusion.num_timesteps={total}", num_steps)


def _check_ncsn(c: Checker) -> None:
    c.real("diffusion.sigma_min", low=0.0, low_open=True)
    c.real("diffusion.sigma_max", low=0.0, low_open=True)
    c.int("diffusion.num_sigmas", minimum=1)
    low, high = c.get("diffusion.sigma_min"), c.get("diffusion.sigma_max")
    if high <= low:
        c.fail("diffusion.sigma_max", f"> config.diffusion.sigma_min={low}", high)


def _check_vdm(c: Checker) -> None:
    c.one_of("diffusion.gamma", ("learned", "linear"))
    c.real("diffusion.gamma_min")
    c.real("diffusion.gamma_max")
    low, high = c.get("diffusion.gamma_min"), c.get("diffusion.gamma_max")
    if high <= low:
        c.fail("diffusion.gamma_max", f"> config.diffusion.gamma_min={low}", high)
    c.int("diffusion.gamma_features", minimum=1)
    c.int("diffusion.num_timesteps", minimum=1, optional=True)
    c.real("diffusion.time_scale", low=0.0, low_open=True)
    c.one_of("diffusion.head", ("eps", "categorical"))
    exponents = c.get("diffusion.fourier_exponents")
    if not isinstance(exponents, (list, tuple)) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in exponents
    ):
        c.fail("diffusion.fourier_exponents", "a tuple of integers (() for none)", exponents)


_GAUSSIAN_PREDICTIONS = ("eps", "x0", "v", "velocity", "score")


def _check_gaussian(c: Checker) -> None:
    c.one_of("diffusion.prediction", _GAUSSIAN_PREDICTIONS)
    c.one_of("diffusion.variance", ("fixed_small", "fixed_large"))  # no learned variance


def _edm_denoiser(sigma_data: float, model_fn):
    """An EDM run's network as the denoiser D(x; sigma) (:func:`~jaxdiff.models.
    edm_precondition`)."""
    return models.edm_precondition(model_fn, sigma_data=sigma_data)


def _flow_velocity(process, model_fn):
    """A flow run's network as the velocity v(x, t), called with ``process.model_time(t)``
    (``time_scale * t``)."""
    return lambda x, t: model_fn(x, process.model_time(t))


def _vdm_gamma(model_fn):
    """The schedule gamma(t) of a VDM: the ``gamma`` method of a :class:`~jaxdiff.vdm.VDMModel`,
    or of the driver's ``partial(network.apply, variables)``."""
    if isinstance(model_fn, nnx.Module):
        return model_fn.gamma
    return functools.partial(model_fn, method="gamma")


def _vdm_process(model_fn) -> processes.VPGamma:
    """The continuous process of a VDM's schedule, learned or fixed (Kingma et al. 2021)."""
    return processes.VPGamma(_vdm_gamma(model_fn))


def _vdm_bound(settings: Settings, model_fn, process, x0, rng) -> dict:
    """:func:`~jaxdiff.losses.vdm_loss` (continuous time, or ``settings.num_timesteps`` steps):
    ``dict(total, diffusion, prior, decoder)``, each ``[B]`` bits/dim."""
    return losses.vdm_loss(model_fn, process.gamma, x0, rng, num_timesteps=settings.num_timesteps)


def _ddpm_variance(settings: Settings, variance) -> str:
    """The reverse variance a DDPM run's bound uses: ``variance``, or the trained one when None;
    it may be changed between the fixed ones, or the learned ones, never across.

    Raises:
      ValueError: across.
    """
    trained = settings.variance
    variance = variance or trained
    if (variance in _LEARNED) != (trained in _LEARNED):
        raise ValueError(
            f"variance {variance} does not fit this run, trained with "
            f"config.diffusion.variance={trained!r} (learned and fixed variances are "
            f"not interchangeable)"
        )
    return variance


def _ddpm_bound(settings: Settings, model_fn, schedule, x0, rng, *, variance=None) -> dict:
    """:func:`jaxdiff.elbo.nll_bpd` (Ho et al. 2020, eq. 5) with the reverse ``variance``
    (:func:`_ddpm_variance`), its per-timestep terms ``[B, T]`` under ``terms``."""
    out = elbo.nll_bpd(
        model_fn, schedule, x0, rng, variance=_ddpm_variance(settings, variance),
        prediction=settings.prediction,
    )
    return dict(total=out["total"], prior=out["prior"], diffusion=out["diffusion"],
                decoder=out["decoder"], terms=out["vb"])


def _ddpm_validation(settings: Settings, model_fn, schedule, x0, rng) -> jnp.ndarray:
    """:func:`jaxdiff.elbo.stratified_nll_bpd`: ``validation_calls`` stratified timesteps
    besides L_0."""
    num = min(settings.validation_calls, schedule.num_timesteps - 1)
    return elbo.stratified_nll_bpd(
        model_fn, schedule, x0, rng, num_timesteps=num, variance=settings.variance,
        prediction=settings.prediction,
    )["total"]


def _mean_of_bounds(settings: Settings, model_fn, process, x0, rng) -> jnp.ndarray:
    """The mean of ``validation_calls`` independent estimates of a Monte Carlo bound (VDM's)."""
    keys = jax.random.split(rng, settings.validation_calls)
    return jnp.mean(
        jax.lax.map(lambda k: _vdm_bound(settings, model_fn, process, x0, k)["total"], keys), 0
    )


def _ode_likelihood(settings: Settings, model_fn, process, x0, rng, **ode_kwargs) -> dict:
    """:func:`~jaxdiff.samplers.ode_likelihood` of the probability-flow ODE of the process
    (Song et al. 2021, Sec. 4.3), the network read as ``settings.prediction``."""
    return samplers.ode_likelihood(
        _mean_part(model_fn, settings.variance), process, x0, rng,
        prediction=settings.prediction, **ode_kwargs,
    )


def _edm_likelihood(settings: Settings, model_fn, process, x0, rng) -> dict:
    """:func:`~jaxdiff.samplers.edm_likelihood` between the ends of the process."""
    return samplers.edm_likelihood(
        _edm_denoiser(settings.sigma_data, model_fn), x0, rng, sigma_min=process.sigma_min,
        sigma_max=process.sigma_max,
    )


def _flow_likelihood(settings: Settings, model_fn, process, x0, rng) -> dict:
    """:func:`~jaxdiff.samplers.flow_likelihood` from t = 0 to 1."""
    return samplers.flow_likelihood(_flow_velocity(process, model_fn), x0, rng)


def _vdm_model(d, make_network, data_shape):
    """``config.diffusion`` of a VDM run: ``gamma`` ("learned": :class:`~jaxdiff.vdm.
    LearnedGamma` with ``gamma_features`` hidden units, initialised linear; "linear": fixed),
    both between ``gamma_min`` and ``gamma_max``; ``fourier_exponents`` (() for none);
    ``time_scale``; ``head`` ("eps", or "categorical": :func:`~jaxdiff.vdm.categorical_eps`).
    ``make_network(input_shape, out_channels)`` makes the network for inputs of ``input_shape``
    (the data's channels and their Fourier features) and the data's output channels (eps) or
    256 per data channel (categorical); it must be an NNX module."""
    exponents = tuple(d.fourier_exponents)
    channels = data_shape[-1]
    input_shape = (*data_shape[:-1], channels * (1 + 2 * len(exponents)))
    categorical = d.get("head", "eps") == "categorical"
    network = make_network(input_shape, channels * (vdm.NUM_VALUES if categorical else 1))
    if not isinstance(network, network_lib.NNXNetwork):
        raise ValueError("config.model: a VDM run needs an NNX network (nnx.Module)")

    def make(rngs):
        net = network.make(rngs)
        if exponents:
            net = vdm.FourierFeatures(net, exponents)
        schedule = None
        if d.gamma == "learned":
            schedule = vdm.LearnedGamma(d.gamma_min, d.gamma_max, d.gamma_features, rngs=rngs)
        return vdm.VDMModel(
            net, schedule, gamma_min=d.gamma_min, gamma_max=d.gamma_max,
            time_scale=d.time_scale, head=d.get("head", "eps"),
        )

    return network_lib.NNXNetwork(make)


def _ddpm_objective(loss, cfg, schedule):
    """``config.loss``: its fields other than ``name`` are the loss's keyword arguments
    (``vlb_weight``; ``weighting`` names a weight function of :mod:`jaxdiff.losses`, e.g.
    ``"min_snr"``, with ``gamma``)."""
    options = dict(cfg.loss)
    options.pop("name")
    options["prediction"] = cfg.diffusion.prediction
    if loss is not losses.simple_loss:
        options["variance"] = cfg.diffusion.variance
    if options.get("weighting"):
        weight = getattr(losses, f"{options['weighting']}_weight", None)
        if weight is None:
            raise ValueError(
                f"config.loss.weighting: no {options['weighting']}_weight in jaxdiff.losses"
            )
        gamma = options.pop("gamma", None)
        options["weighting"] = weight if gamma is None else functools.partial(weight, gamma=gamma)
    return lambda model_fn, x0, rng: loss(model_fn, schedule, x0, rng, **options)


def _dsm_objective(cfg, levels):
    return lambda score_fn, x0, rng: losses.dsm_loss(score_fn, levels.sigmas, x0, rng)


def _edm_objective(cfg, process):
    sigma_data, p_mean, p_std = cfg.diffusion.sigma_data, cfg.loss.p_mean, cfg.loss.p_std
    return lambda model_fn, x0, rng: losses.edm_loss(
        _edm_denoiser(sigma_data, model_fn), x0, rng, p_mean=p_mean, p_std=p_std,
        sigma_data=sigma_data,
    )


def _flow_objective(cfg, process):
    time_sampling = cfg.loss.time_sampling
    return lambda model_fn, x0, rng: losses.flow_matching_loss(
        _flow_velocity(process, model_fn), x0, rng, time_sampling=time_sampling
    )


def _vdm_objective(cfg, process):
    settings = Settings.of(cfg)
    return lambda model_fn, x0, rng: _vdm_bound(
        settings, model_fn, _vdm_process(model_fn), x0, rng
    )["total"]


def _denoising_objective(cfg, process):
    """:func:`~jaxdiff.losses.denoising_loss` of ``config.diffusion.prediction`` (L_simple of
    Ho et al. 2020 on any process: t ~ U(t_data, t_noise), unweighted squared error)."""
    prediction = cfg.diffusion.get("prediction", "eps")
    return lambda model_fn, x0, rng: losses.denoising_loss(
        model_fn, process, x0, rng, prediction=prediction
    )


def _fields_of(cls, d) -> dict:
    """The fields of the dataclass ``cls`` that ``config.diffusion`` sets."""
    return {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}


# The samplers of any GaussianProcess (they read the network through the process alone).
_ANY_PROCESS = ("ode", "dpm_solver", "ancestral", "edm")


def gaussian(cls: type[processes.GaussianProcess]) -> Kind:
    """The kind of any :class:`~jaxdiff.processes.GaussianProcess` subclass ``cls``: built
    from the fields of ``config.diffusion`` named as its own (defaults for the others), the
    network trained by :func:`~jaxdiff.losses.denoising_loss` to predict
    ``config.diffusion.prediction`` (``config.loss.name = "simple"``), sampled by the solvers of
    any process, started from the process's prior, and evaluated by the probability-flow ODE's
    likelihood. ``config.diffusion.kind = "package.module:Class"`` names a user's class."""
    return Kind(
        process=lambda d: cls(**_fields_of(cls, d)),
        objectives={"simple": _denoising_objective},
        samplers=_ANY_PROCESS,
        likelihood=_ode_likelihood,
        check=_check_gaussian,
    )


KINDS: dict[str, Kind] = {
    "ddpm": Kind(
        process=lambda d: schedules.get(d.schedule, d.num_timesteps),
        objectives={
            "simple": functools.partial(_ddpm_objective, losses.simple_loss),
            "vlb": functools.partial(_ddpm_objective, losses.vlb_loss),
            "hybrid": functools.partial(_ddpm_objective, losses.hybrid_loss),
        },
        samplers=("ddpm", "ddim", "dpm_solver", "ode", "edm"),
        prior=_normal_prior,
        time_input=_int_time,
        bound=_ddpm_bound,
        likelihood=_ode_likelihood,
        validation=_ddpm_validation,
        check=_check_ddpm,
    ),
    "ncsn": Kind(
        process=lambda d: processes.VELevels(
            schedules.geometric_sigmas(d.sigma_max, d.sigma_min, d.num_sigmas)
        ),
        objectives={"dsm": _dsm_objective},
        samplers=("langevin",),
        prior=_uniform_prior,
        check=_check_ncsn,
    ),
    "edm": Kind(
        process=lambda d: processes.EDM(d.sigma_min, d.sigma_max),
        objectives={"edm": _edm_objective},
        samplers=("edm",),
        prior=_normal_prior,
        likelihood=_edm_likelihood,
    ),
    "flow": Kind(
        process=lambda d: processes.LinearFlow(time_scale=d.time_scale),
        objectives={"flow_matching": _flow_objective},
        samplers=("flow",),
        prior=_normal_prior,
        likelihood=_flow_likelihood,
    ),
    "vdm": Kind(
        process=lambda d: processes.VPGamma(processes.linear_gamma(d.gamma_min, d.gamma_max)),
        objectives={"vdm": _vdm_objective},
        samplers=("vdm",),
        prior=_normal_prior,
        learned=_vdm_process,
        bound=_vdm_bound,
        likelihood=_ode_likelihood,
        validation=_mean_of_bounds,
        wrap=_vdm_model,
        check=_check_vdm,
    ),
    "trig": gaussian(processes.Trig),
}


def resolve_kind(name: str) -> Kind:
    """The :class:`Kind` of ``config.diffusion.kind``: an entry of :data:`KINDS`, or a user's
    GaussianProcess subclass named ``"package.module:Class"`` (:func:`gaussian`).

    Raises:
      ValueError: an unknown name, or one that does not import to a GaussianProcess subclass.
    """
    if isinstance(name, str) and ":" in name:
        cls = network_lib.import_factory(name, field="config.diffusion.kind")
        if not (isinstance(cls, type) and issubclass(cls, processes.GaussianProcess)):
            raise ValueError(
                f"config.diffusion.kind: {name!r} is not a subclass of "
                "jaxdiff.processes.GaussianProcess"
            )
        return gaussian(cls)
    if name not in KINDS:
        raise ValueError(
            f"config.diffusion.kind must be one of {', '.join(sorted(KINDS))} or "
            f"'package.module:Class' (a GaussianProcess subclass), got {name!r}"
        )
    return KINDS[name]


def _resolve_model(cfg: ml_collections.ConfigDict, data_shape, out_channels: int | None):
    """``config.model.name`` names a constructor in :mod:`jaxdiff.models` (``"ddpm_digits"``,
    ``"UNet"``), ``"module.Name"`` in a submodule (``"mlp.MLP"``), or a user's
    ``"package.module:factory"`` returning an ``nnx.Module`` or a ``flax.linen.Module``. The
    other fields are its keyword arguments (a user's factory gets those its signature names),
    ``dtype`` given by name (``"bfloat16"``); the data's shapes come from the data
    (:func:`~jaxdiff.models.network.make_network`). Runs of jaxdiff 0.2 name it ``preset``."""
    kwargs = dict(cfg)
    name = kwargs.pop("name", None) or kwargs.pop("preset")
    kwargs.pop("preset", None)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    kwargs["dtype"] = jnp.dtype(kwargs.get("dtype", "float32"))
    if ":" in name:
        factory = network_lib.import_factory(name)
        accepted = network_lib.keywords(factory)
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    else:
        module_name, _, attr = name.rpartition(".")
        try:
            module = importlib.import_module(f"jaxdiff.models.{module_name}" if module_name else "jaxdiff.models")
        except ImportError:
            module = None
        factory = getattr(module, attr, None)
        if factory is None:
            raise ValueError(f"config.model.name: no model {name!r} in jaxdiff.models")
    return network_lib.make_network(
        factory, kwargs, data_shape, out_channels=out_channels, name=name
    )


def _check_output(model, data_shape, time_input, out_channels):
    """The network's output for one example has the data's shape (``out_channels`` channels
    when the process asks for them); a ValueError naming both shapes otherwise."""
    x = jnp.zeros((1, *data_shape), jnp.float32)
    try:
        variables = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x, time_input(1))
        out = jax.eval_shape(model.apply, variables, x, time_input(1))
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.model: the network cannot be called as model(x, t) ({e})") from e
    others = sorted(set(variables) - {"params"})
    if others:
        raise ValueError(
            f"config.model: the network has variables other than params ({', '.join(others)}); "
            f"the driver trains and carries only the parameters"
        )
    want = (1, *data_shape[:-1], out_channels or data_shape[-1])
    if getattr(out, "shape", None) != want:
        raise ValueError(
            f"config.model: the network's output for x of shape {x.shape} has shape "
            f"{getattr(out, 'shape', type(out).__name__)}, expected {want}"
        )


def _output_channels(diff, channels: int) -> int | None:
    """The network's output channels: twice the data's for a learned variance, else the
    input's (None; a kind's ``wrap`` may ask for others)."""
    if diff.get("variance", "fixed_small") in _LEARNED:
        return 2 * channels
    return None


def build_experiment(config: ml_collections.ConfigDict, *, data_shape=None) -> Experiment:
    """Resolves a config into an :class:`Experiment` (the only place names are looked up).

    Args:
      config: the run's config.
      data_shape: the shape of one example; read from the dataset when None.

    Raises:
      ValueError: for an unknown name or a bad combination of options.
      jaxdiff.data.DataError: for an unknown or unavailable dataset.
    """
    if data_shape is None:
        data_shape = np.shape(train_source(config)[0]["x"])
    diff = config.diffusion
    kind = resolve_kind(diff.kind)
    if config.loss.name not in kind.objectives:
        raise ValueError(
            f"config.loss.name must be one of {sorted(kind.objectives)} for config.diffusion.kind="
            f"{diff.kind!r}, got {config.loss.name!r}"
        )
    out_channels = _output_channels(diff, data_shape[-1])

    def make_network(input_shape, channels=out_channels):
        return _resolve_model(config.model, input_shape, channels)

    if kind.wrap is None:
        model = make_network(tuple(data_shape))
        _check_output(model, tuple(data_shape), kind.time_input, out_channels)
    else:
        model = kind.wrap(diff, make_network, tuple(data_shape))
    process = kind.process(diff)
    objective = kind.objectives[config.loss.name](config, process)
    opt = config.optim
    lr = learning_rate_schedule(opt.learning_rate, opt.warmup_steps)
    tx = make_optimizer(
        learning_rate=lr, grad_clip=opt.grad_clip, b1=opt.b1, b2=opt.b2, eps=opt.eps
    )
    return Experiment(
        model=model, process=process, objective=objective, prior=kind.prior(process),
        data_shape=tuple(data_shape), tx=tx, lr_schedule=lr, time_input=kind.time_input,
        kind=kind, settings=Settings.of(config),
    )


def _mean_part(model_fn, variance: str):
    """The model with a learned-variance output cut to its mean half, for the samplers that
    use no variance (DDIM, DPM-Solver, the probability-flow ODE)."""

    def mean_fn(x, t):
        return split_learned_variance(model_fn(x, t), x.shape[-1], variance)[0]

    return mean_fn


# Each entry: (options, process) -> sample(model_fn, x_T, rng) -> x_0, ``options`` the run's
# :class:`SamplingOptions`.
SAMPLERS: dict[str, Callable] = {
    "ddpm": lambda c, p: lambda f, x, rng: samplers.ddpm_sample(
        f, p, x, rng, variance=c.variance, prediction=c.prediction, clip_denoised=c.clip_denoised,
        num_steps=c.ddpm_num_steps,
    ),
    "ddim": lambda c, p: lambda f, x, rng: samplers.ddim_sample(
        _mean_part(f, c.variance), p, x, rng, num_steps=c.num_steps, eta=c.eta,
        prediction=c.prediction, clip_denoised=c.clip_denoised,
    ),
    "dpm_solver": lambda c, p: lambda f, x, rng: samplers.dpm_solver_sample(
        _mean_part(f, c.variance), p, x, num_steps=c.num_steps, order=c.order,
        prediction=c.prediction,
    ),
    "ode": lambda c, p: lambda f, x, rng: samplers.ode_sample(
        _mean_part(f, c.variance), p, x, method=c.method, num_steps=c.num_steps,
        prediction=c.prediction,
    ),
    "ancestral": lambda c, p: lambda f, x, rng: samplers.sample(
        samplers.ancestral_step, f, p, x, rng, num_steps=c.num_steps, prediction=c.prediction
    ),
    "langevin": lambda c, p: lambda f, x, rng: samplers.annealed_langevin(
        f, p.sigmas, x, rng, steps_per_sigma=c.steps_per_sigma, step_lr=c.step_lr
    ),
    "edm": lambda c, p: _edm_sampler(c, p),
    "flow": lambda c, p: lambda f, x, rng: samplers.flow_sample(
        _flow_velocity(p, f), x, rng, num_steps=c.num_steps, method=c.method
    ),
    "vdm": lambda c, p: lambda f, x, rng: samplers.vdm_sample(
        f, _vdm_gamma(f), x, rng, num_steps=c.num_steps
    ),
}


def _edm_sampler(c, process):
    """Karras et al. (2022), Alg. 1/2 (``c.churn``, ``s_tmin``, ``s_tmax``, ``s_noise``) on the
    Karras grid (exponent ``c.rho``): of an EDM run, its network preconditioned
    (``c.sigma_data``), started at sigma_max x_T; of any other process through Table 1's
    columns (:func:`~jaxdiff.samplers.process_denoiser`: the state scaled by 1 / alpha, so the
    prior's x_T starts at x_T / alpha(t_noise), sqrt(1 + sigma_max^2) x_T for a
    variance-preserving one)."""
    if isinstance(process, processes.EDM):
        sigma_min, sigma_max, start = process.sigma_min, process.sigma_max, process.sigma_max

        def denoiser(f):
            return _edm_denoiser(c.settings.sigma_data, f)
    else:
        with jax.ensure_compile_time_eval():  # the grid is a constant of the (jitted) chain
            sigma_min, sigma_max = samplers.sigma_range(process)
            alpha, sigma = process.alpha_sigma(jnp.asarray(process.t_noise, jnp.float32))
            start = math.sqrt(1.0 + sigma_max**2) / float(jnp.sqrt(alpha**2 + sigma**2))  # 1 / alpha

        def denoiser(f):
            f = _mean_part(f, c.variance)
            return samplers.process_denoiser(f, process, prediction=c.prediction)
    sigmas = schedules.karras_sigmas(c.num_steps, sigma_min, sigma_max, c.settings.rho)
    return lambda f, x, rng: samplers.edm_sample(
        denoiser(f), sigmas, start * x, rng, method=c.method, churn=c.churn, s_tmin=c.s_tmin,
        s_tmax=c.s_tmax, s_noise=c.s_noise,
    )


def build_sampler(config: ml_collections.ConfigDict, experiment: Experiment, **overrides):
    """Resolves ``config.sampling`` (:meth:`SamplingOptions.of`, with ``overrides``:
    :meth:`SamplingOptions.replace`) into ``sample(variables, rng, num) -> x_0``
    (:func:`sampler`).

    Args:
      config: the run's config.
      experiment: from :func:`build_experiment`.
      **overrides: replace fields of ``config.sampling`` (``sampler="ddim"``); ``num_steps``
        sets the chosen sampler's step count, whatever its field (:data:`STEP_FIELDS`).
    """
    options = SamplingOptions.of(config.sampling, experiment.settings).replace(**overrides)
    return sampler(experiment, options)


def sampler(experiment: Experiment, options: SamplingOptions):
    """``sample(variables, rng, num) -> x_0``: the sampler ``options.sampler`` of
    :data:`SAMPLERS` from the experiment's prior.

    Returns:
      A function of the model variables, a key and the (static) number of samples, returning
      ``[num, *data_shape]`` float samples in the model range. Jit it as a whole.

    Raises:
      ValueError: the sampler does not fit the run's kind.
    """
    _check_fits(experiment.kind, experiment.settings.kind, options.sampler, name="sampler")
    sample_chain = SAMPLERS[options.sampler](options, experiment.process)

    def sample(variables, rng, num: int):
        model_fn = functools.partial(experiment.model.apply, variables)
        prior_key, chain_key = jax.random.split(rng)
        x_t = experiment.prior(prior_key, (num, *experiment.data_shape))
        return sample_chain(model_fn, x_t, chain_key)

    return sample


def initial_state(experiment: Experiment, key, *, rng) -> TrainState:
    """A fresh :class:`TrainState` of an experiment: the model initialised from ``key`` on a
    dummy batch of one example, the run key ``rng``. Use with ``jax.eval_shape`` for the
    abstract state that a checkpoint is restored into."""
    x = jnp.zeros((1, *experiment.data_shape), jnp.float32)
    params = experiment.model.init({"params": key}, x, experiment.time_input(1))["params"]
    return create_train_state(params, experiment.tx, rng)


def make_loss_fn(experiment: Experiment):
    """``loss_fn(params, batch, rng) -> [B]``: scales the batch to [-1, 1], binds the
    parameters and a dropout key into ``model_fn`` (a partial of ``model.apply``, so an
    objective can call the model's other methods, e.g. a VDM's ``gamma``) and calls the
    objective."""

    def loss_fn(params, batch, rng):
        dropout_key, loss_key = jax.random.split(rng)
        x0 = data_lib.to_model_range(batch["x"])
        model_fn = functools.partial(
            experiment.model.apply, {"params": params}, train=True, rngs={"dropout": dropout_key}
        )
        return experiment.objective(model_fn, x0, loss_key)

    return loss_fn


def _pure_step(experiment: Experiment, *, ema: float, ema_warmup: bool) -> Callable:
    return functools.partial(
        train_step,
        loss_fn=make_loss_fn(experiment),
        ema=ema,
        ema_warmup=ema_warmup,
        lr_schedule=experiment.lr_schedule,
    )


def make_train_step(
    experiment: Experiment, mesh: Mesh, *, ema: float, ema_warmup: bool, state_sharding=None
):
    """The compiled step of a diffusion run, ``step_fn(state, batch) -> (state, metrics)``:
    :func:`compile_train_step` of :func:`~jaxdiff.engine.step.train_step` on the experiment's
    loss, keyed by ``state.rng``."""
    pure = _pure_step(experiment, ema=ema, ema_warmup=ema_warmup)
    return compile_train_step(pure, mesh, state_sharding=state_sharding, check_finite=False)


def family(config: ml_collections.ConfigDict, data_shape) -> Family:
    """The diffusion model of ``config`` as a :class:`~jaxdiff.engine.family.Family`: the state
    is a :class:`~jaxdiff.engine.step.TrainState`, the step :func:`train_step` on the config's
    objective, the samples the config's sampler on the EMA parameters (``sample(state, rng,
    num, sampler=None, num_steps=None)``, see :func:`build_sampler`); its bound is the
    process's (the DDPM bound of Ho et al. 2020, eq. 5, or VDM's), its likelihood the
    probability-flow ODE's (Song et al. 2021, Sec. 4.3).

    Raises:
      ValueError: a field of ``config.diffusion``, ``config.loss`` or ``config.sampling`` is
        unknown or out of range (named by its dotted path).
    """
    _check_diffusion(Checker(config))
    experiment = build_experiment(config, data_shape=data_shape)
    _, run_key, _ = run_keys(config.seed)
    tcfg = config.training

    sampling = SamplingOptions.of(config.sampling, experiment.settings)

    def sample(state, rng, num, **overrides):
        chain = sampler(experiment, sampling.replace(**overrides))
        return chain({"params": state.ema_params}, rng, num)

    return Family(
        init_state=functools.partial(initial_state, experiment, rng=run_key),
        train_step=_pure_step(experiment, ema=tcfg.ema_decay, ema_warmup=tcfg.ema_warmup),
        sample=sample,
        data_shape=experiment.data_shape,
        validate=_validation_bound(experiment),
        bound=_bound(experiment),
        likelihood=_likelihood(experiment),
        parts=experiment,
    )


diffusion_family = family  # the name of 0.2


def _on_ema(fn, experiment: Experiment, options: tuple, state, x0, rng) -> dict:
    """``fn(settings, model_fn, process, x0, rng, **options)`` on the EMA model of ``state``
    (no dropout) and its process."""
    model_fn = functools.partial(experiment.model.apply, {"params": state.ema_params})
    process = experiment.process_of(model_fn)
    return fn(experiment.settings, model_fn, process, x0, rng, **dict(options))


def _bound(experiment: Experiment):
    """``bound(**options) -> Estimate``: the kind's bound (a DDPM run's takes ``variance``; a
    Monte Carlo one, VDM's, is averaged over 256 draws per example); None without one."""
    kind, settings = experiment.kind, experiment.settings
    if kind.bound is None:
        return None
    if kind.bound is _ddpm_bound:

        def bound(*, variance=None) -> Estimate:
            variance = _ddpm_variance(settings, variance)
            fn = functools.partial(_on_ema, _ddpm_bound, experiment, (("variance", variance),))
            return Estimate(fn, "diffusion", {"variance": variance})

        return bound
    fn = functools.partial(_on_ema, kind.bound, experiment, ())
    return lambda: Estimate(fn, f"{settings.kind} bound", draws=256)


def likelihood_parts(out: dict, x0) -> dict:
    """A change of variables' result (:func:`~jaxdiff.samplers.change_of_variables`: log-densities
    in nats) as the bound's parts in bits/dim: ``total``; ``prior``, the latent's density;
    ``diffusion``, the flow's log-determinant; ``decoder``, the dequantisation (-log2 of the
    bin width)."""
    nats_to_bits = -1.0 / (math.prod(x0.shape[1:]) * math.log(2.0))
    prior, diffusion = nats_to_bits * out["prior_logp"], nats_to_bits * out["delta_logp"]
    return dict(total=out["bpd"], prior=prior, diffusion=diffusion,
                decoder=out["bpd"] - prior - diffusion)


def _likelihood_bpd(fn, settings, model_fn, process, x0, rng, **options) -> dict:
    return likelihood_parts(fn(settings, model_fn, process, x0, rng, **options), x0)


def _likelihood(experiment: Experiment):
    """``likelihood(**ode_kwargs) -> Estimate``: the kind's exact likelihood (EDM's and the flow's
    own, the probability-flow ODE's of a DDPM, VDM or any other process, which takes the
    options of :func:`~jaxdiff.samplers.ode_likelihood`); None without one (NCSN)."""
    fn = experiment.kind.likelihood
    if fn is None:
        return None
    in_bits = functools.partial(_likelihood_bpd, fn)
    if fn is not _ode_likelihood:
        estimate = functools.partial(_on_ema, in_bits, experiment, ())
        return lambda: Estimate(estimate, f"{experiment.settings.kind} ODE likelihood")
    return lambda **ode_kwargs: Estimate(
        functools.partial(_on_ema, in_bits, experiment, tuple(sorted(ode_kwargs.items()))),
        "PF-ODE likelihood",
    )


def _validation_bound(experiment: Experiment):
    """``validate(state, batch, rng) -> [B]``: the EMA model's bound on a held-out batch (the
    kind's ``validation``); None for a kind without one."""
    if experiment.kind.validation is None:
        return None

    def validate(state, batch, rng):
        x0 = data_lib.to_model_range(batch["x"])
        return _on_ema(experiment.kind.validation, experiment, (), state, x0, rng)

    return validate


def _check_diffusion(c: Checker) -> None:
    """The fields of ``config.diffusion``, ``config.loss`` and ``config.sampling``."""
    try:
        kind = resolve_kind(c.get("diffusion.kind"))
    except ValueError as e:
        raise ValueError(str(e)) from None
    kind.check(c)
    c.one_of("loss.name", sorted(kind.objectives))
    c.real("loss.vlb_weight", low=0.0, optional=True)
    c.real("loss.gamma", low=0.0, low_open=True, optional=True)
    c.one_of("sampling.sampler", sorted(SAMPLERS))
    _check_fits(kind, c.get("diffusion.kind"), c.get("sampling.sampler"), name="config.sampling.sampler")
    c.int("sampling.num_steps", minimum=1)
    c.real("sampling.eta", low=0.0)
    c.boolean("sampling.clip_denoised")
    c.one_of("sampling.order", (1, 2, 3))
    c.int("sampling.steps_per_sigma", minimum=1)
    c.real("sampling.step_lr", low=0.0, low_open=True)


def _check_fits(kind: Kind, name_of_kind: str, sampler: str, *, name: str) -> None:
    """Checks that ``sampler`` fits a run of ``kind`` (``config.diffusion.kind``).

    Raises:
      ValueError: naming ``name`` (the field or the option) and the samplers that fit.
    """
    if sampler not in kind.samplers:
        raise ValueError(
            f"{name}={sampler} does not fit this run's process (config.diffusion.kind="
            f"{name_of_kind}); it takes {', '.join(kind.samplers)}"
        )
