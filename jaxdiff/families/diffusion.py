"""The diffusion family: a config's names resolved into callables, once.

:func:`build_experiment` is the only place a name of the config is looked up: the model
preset, the noise process (:data:`PROCESSES`, keyed by ``config.diffusion.kind``), the
objective (:data:`OBJECTIVES`, keyed by kind and ``config.loss.name``), the optimizer and the
sampler (:data:`SAMPLERS`). :func:`family` wraps the result as the
:class:`~jaxdiff.engine.family.Family` the engine trains, samples and evaluates.

A new objective is one function ``(config, process) -> objective(model_fn, x0, rng) -> [B]``
added under its kind in :data:`OBJECTIVES`; a new noise process is one :class:`Process` entry.
"""

from __future__ import annotations

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
    "Process",
    "EDMLevels",
    "LinearPath",
    "VDMBound",
    "PROCESSES",
    "OBJECTIVES",
    "SAMPLERS",
    "build_experiment",
    "build_sampler",
    "initial_state",
    "make_loss_fn",
    "make_train_step",
    "family",
    "diffusion_family",
    "likelihood_parts",
]


class Experiment(NamedTuple):
    """A config resolved into callables.

    Attributes:
      model: the network (:mod:`jaxdiff.models.network`: an NNX module's graph and state, or
        a linen module); called as ``model.apply(variables, x, c, train=...)``.
      process: what the loss and the sampler take as their second argument: a
        :class:`~jaxdiff.schedules.Schedule` (``diffusion.kind = "ddpm"``) or the NCSN noise
        levels ``[L]`` (``"ncsn"``).
      objective: ``objective(model_fn, x0, rng) -> [B]`` per-example losses.
      prior: ``prior(rng, shape) -> x_T``, the sampler's starting point.
      data_shape: the shape of one example (e.g. ``(8, 8, 1)``).
      tx: the optax transformation.
      lr_schedule: the learning-rate schedule object ``tx`` was built with (logged as ``lr``).
      time_input: ``time_input(batch) -> [batch]``, a dummy conditioning input of the right
        dtype (int32 timesteps or float noise levels), for initialising the model.
    """

    model: Any
    process: Any
    objective: Callable
    prior: Callable
    data_shape: tuple[int, ...]
    tx: optax.GradientTransformation
    lr_schedule: optax.Schedule | None = None
    time_input: Callable = lambda n: jnp.zeros((n,), jnp.int32)  # noqa: E731


def _normal_prior(rng, shape):
    """x_T ~ N(0, I), where the reverse chain starts (Ho et al. 2020, Alg. 2)."""
    return jax.random.normal(rng, shape)


def _uniform_prior(rng, shape):
    """Uniform noise over the data range, where Song & Ermon (2019) start annealed Langevin."""
    return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)


class Process(NamedTuple):
    """A noise process of ``config.diffusion``: ``build(config.diffusion)`` gives the process
    object the losses and samplers take, ``prior`` draws where sampling starts, ``time_input``
    a dummy conditioning input of the model's time dtype. ``wrap(config.diffusion, network)``,
    when given, makes the model from the network of ``config.model`` (built with the data's
    output channels), for a process with learned parts of its own. ``check(checker)`` checks
    the process's own fields of the config (:class:`~jaxdiff.engine.checks.Checker`).
    ``samplers`` names the entries of :data:`SAMPLERS` that fit it."""

    build: Callable
    prior: Callable
    time_input: Callable
    samplers: tuple[str, ...]
    wrap: Callable | None = None
    check: Callable[[Checker], None] = lambda c: None


_VARIANCES = ("fixed_small", "fixed_large", "learned", "learned_range")


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


class EDMLevels(NamedTuple):
    """The process of ``diffusion.kind = "edm"`` (Karras et al. 2022): x = x_0 + sigma n with
    the network preconditioned (:func:`~jaxdiff.models.edm_precondition`, ``sigma_data``),
    sampled on the Karras grid between ``sigma_min`` and ``sigma_max`` (exponent ``rho``)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5

    def denoiser(self, model_fn):
        """The network as the denoiser D(x; sigma)."""
        return models.edm_precondition(model_fn, sigma_data=self.sigma_data)

    def sigmas(self, num_steps: int):
        return schedules.karras_sigmas(num_steps, self.sigma_min, self.sigma_max, self.rho)

    def likelihood(self, model_fn, x0, rng) -> dict:
        """:func:`~jaxdiff.samplers.edm_likelihood` between the grid's ends."""
        return samplers.edm_likelihood(
            self.denoiser(model_fn), x0, rng, sigma_min=self.sigma_min, sigma_max=self.sigma_max
        )


class LinearPath(NamedTuple):
    """The process of ``diffusion.kind = "flow"``: x_t = (1 - t) x_0 + t eps, t in [0, 1]
    (flow matching, Lipman et al. 2023; rectified flow, Liu et al. 2023). The network is called
    with ``time_scale * t`` (a sinusoidal embedding made for integer timesteps needs ~1000)."""

    time_scale: float = 1.0

    def velocity(self, model_fn):
        """The network as the velocity v(x, t)."""
        scale = self.time_scale
        return lambda x, t: model_fn(x, scale * t)

    def likelihood(self, model_fn, x0, rng) -> dict:
        """:func:`~jaxdiff.samplers.flow_likelihood`."""
        return samplers.flow_likelihood(self.velocity(model_fn), x0, rng)


class VDMBound(NamedTuple):
    """The process of ``diffusion.kind = "vdm"`` (Kingma et al. 2021): the variance-preserving
    path of gamma(t) = -log SNR(t), t in [0, 1], in continuous time (``num_timesteps`` None) or
    as the T-step model. The model is a :class:`~jaxdiff.vdm.VDMModel`: its ``gamma`` method
    is the schedule, fixed linear or learned (:func:`_vdm_model`)."""

    num_timesteps: int | None = None

    @staticmethod
    def gamma(model_fn):
        """The schedule gamma(t) of the model: the ``gamma`` method of a
        :class:`~jaxdiff.vdm.VDMModel`, or of the driver's ``partial(network.apply,
        variables)``."""
        if isinstance(model_fn, nnx.Module):
            return model_fn.gamma
        return functools.partial(model_fn, method="gamma")

    def ode_process(self, model_fn) -> processes.VPGamma:
        """The continuous process of the model's schedule, for the probability-flow ODE."""
        return processes.VPGamma(self.gamma(model_fn))

    def bound(self, model_fn, x0, rng) -> dict:
        """:func:`~jaxdiff.losses.vdm_loss`: ``dict(total, diffusion, prior, decoder)``, each
        ``[B]`` bits/dim."""
        return losses.vdm_loss(
            model_fn, self.gamma(model_fn), x0, rng, num_timesteps=self.num_timesteps
        )


def _vdm_model(d, make_network, data_shape):
    """``config.diffusion`` of a VDM run: ``gamma`` ("learned": :class:`~jaxdiff.vdm.
    LearnedGamma` with ``gamma_features`` hidden units, initialised linear; "linear": fixed),
    both between ``gamma_min`` and ``gamma_max``; ``fourier_exponents`` (() for none);
    ``time_scale``; ``head`` ("eps", or "categorical": :func:`~jaxdiff.vdm.categorical_eps`).
    ``make_network(input_shape)`` makes the network for inputs of ``input_shape`` (the data's
    channels and their Fourier features); it must be an NNX module."""
    exponents = tuple(d.fourier_exponents)
    input_shape = (*data_shape[:-1], data_shape[-1] * (1 + 2 * len(exponents)))
    network = make_network(input_shape)
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


def _float_time(n):
    return jnp.ones((n,), jnp.float32)  # a noise level or a time in [0, 1]


PROCESSES: dict[str, Process] = {
    "ddpm": Process(
        build=lambda d: schedules.get(d.schedule, d.num_timesteps),
        prior=_normal_prior,
        time_input=lambda n: jnp.zeros((n,), jnp.int32),  # a timestep
        samplers=("ddpm", "ddim", "dpm_solver", "ode", "edm"),
        check=_check_ddpm,
    ),
    "ncsn": Process(
        build=lambda d: schedules.geometric_sigmas(d.sigma_max, d.sigma_min, d.num_sigmas),
        prior=_uniform_prior,
        time_input=_float_time,
        samplers=("langevin",),
        check=_check_ncsn,
    ),
    "edm": Process(
        build=lambda d: EDMLevels(d.sigma_min, d.sigma_max, d.rho, d.sigma_data),
        prior=_normal_prior,
        time_input=_float_time,
        samplers=("edm",),
    ),
    "flow": Process(
        build=lambda d: LinearPath(d.time_scale),
        prior=_normal_prior,
        time_input=_float_time,
        samplers=("flow",),
    ),
    "vdm": Process(
        build=lambda d: VDMBound(d.get("num_timesteps")),
        prior=_normal_prior,
        time_input=_float_time,
        samplers=("vdm",),
        wrap=_vdm_model,
        check=_check_vdm,
    ),
}


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


def _dsm_objective(cfg, sigmas):
    return lambda score_fn, x0, rng: losses.dsm_loss(score_fn, sigmas, x0, rng)


# kind -> loss name -> (config, process) -> objective(model_fn, x0, rng) -> [B]
OBJECTIVES: dict[str, dict[str, Callable]] = {
    "ddpm": {
        "simple": functools.partial(_ddpm_objective, losses.simple_loss),
        "vlb": functools.partial(_ddpm_objective, losses.vlb_loss),
        "hybrid": functools.partial(_ddpm_objective, losses.hybrid_loss),
    },
    "ncsn": {"dsm": _dsm_objective},
    "edm": {
        "edm": lambda cfg, levels: lambda model_fn, x0, rng: losses.edm_loss(
            levels.denoiser(model_fn), x0, rng, p_mean=cfg.loss.p_mean, p_std=cfg.loss.p_std,
            sigma_data=levels.sigma_data,
        )
    },
    "flow": {
        "flow_matching": lambda cfg, path: lambda model_fn, x0, rng: losses.flow_matching_loss(
            path.velocity(model_fn), x0, rng, time_sampling=cfg.loss.time_sampling
        )
    },
    "vdm": {
        "vdm": lambda cfg, process: lambda model_fn, x0, rng: process.bound(model_fn, x0, rng)[
            "total"
        ]
    },
}


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
    """The network's output channels: twice the data's for a learned variance; a VDM's, whose
    input has Fourier channels too, the data's (eps) or 256 per data channel (categorical);
    else the input's (None)."""
    if diff.get("variance", "fixed_small") in ("learned", "learned_range"):
        return 2 * channels
    if diff.kind == "vdm":
        return channels * (vdm.NUM_VALUES if diff.get("head", "eps") == "categorical" else 1)
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
    if diff.kind not in PROCESSES:
        raise ValueError(f"config.diffusion.kind must be one of {sorted(PROCESSES)}, got {diff.kind!r}")
    objectives = OBJECTIVES[diff.kind]
    if config.loss.name not in objectives:
        raise ValueError(
            f"config.loss.name must be one of {sorted(objectives)} for config.diffusion.kind="
            f"{diff.kind!r}, got {config.loss.name!r}"
        )
    kind = PROCESSES[diff.kind]
    out_channels = _output_channels(diff, data_shape[-1])

    def make_network(input_shape):
        return _resolve_model(config.model, input_shape, out_channels)

    if kind.wrap is None:
        model = make_network(tuple(data_shape))
        _check_output(model, tuple(data_shape), kind.time_input, out_channels)
    else:
        model = kind.wrap(diff, make_network, tuple(data_shape))
    process = kind.build(diff)
    objective = objectives[config.loss.name](config, process)
    opt = config.optim
    lr = learning_rate_schedule(opt.learning_rate, opt.warmup_steps)
    tx = make_optimizer(
        learning_rate=lr, grad_clip=opt.grad_clip, b1=opt.b1, b2=opt.b2, eps=opt.eps
    )
    return Experiment(
        model, process, objective, kind.prior, tuple(data_shape), tx, lr, kind.time_input
    )


def _mean_part(model_fn, variance: str):
    """The model with a learned-variance output cut to its mean half, for the samplers that
    use no variance (DDIM, DPM-Solver, the probability-flow ODE)."""

    def mean_fn(x, t):
        return split_learned_variance(model_fn(x, t), x.shape[-1], variance)[0]

    return mean_fn


# Each entry: (config, process) -> sample(model_fn, x_T, rng) -> x_0. ``config`` is
# ``config.sampling`` merged with the diffusion options.
SAMPLERS: dict[str, Callable] = {
    "ddpm": lambda c, p: lambda f, x, rng: samplers.ddpm_sample(
        f, p, x, rng, variance=c.variance, prediction=c.prediction, clip_denoised=c.clip_denoised,
        num_steps=c.get("ddpm_num_steps"),
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
        _mean_part(f, c.variance), p, x, method=c.method, num_steps=c.num_steps
    ),
    "langevin": lambda c, p: lambda f, x, rng: samplers.annealed_langevin(
        f, p, x, rng, steps_per_sigma=c.steps_per_sigma, step_lr=c.step_lr
    ),
    "edm": lambda c, p: _edm_sampler(c, p),
    "flow": lambda c, p: lambda f, x, rng: samplers.flow_sample(
        p.velocity(f), x, rng, num_steps=c.num_steps, method=c.method
    ),
    "vdm": lambda c, p: lambda f, x, rng: samplers.vdm_sample(
        f, p.gamma(f), x, rng, num_steps=c.num_steps
    ),
}


def _edm_sampler(c, process):
    """Karras et al. (2022), Alg. 1/2 (``c.churn``, ``s_tmin``, ``s_tmax``, ``s_noise``) on the
    Karras grid of an EDM run, or of a DDPM run through Table 1's VP column (the state scaled
    by 1 / alpha, so x_T ~ N(0, I) starts at sqrt(1 + sigma_max^2) x_T)."""
    if isinstance(process, EDMLevels):
        denoiser, sigmas, start = process.denoiser, process.sigmas(c.num_steps), process.sigma_max
    elif isinstance(process, schedules.Schedule):
        sigma_min, sigma_max = samplers.sigma_range(process)
        sigmas = schedules.karras_sigmas(c.num_steps, sigma_min, sigma_max)
        start = math.sqrt(1.0 + sigma_max**2)

        def denoiser(f):
            f = _mean_part(f, c.variance)
            return samplers.process_denoiser(f, process, prediction=c.prediction)
    else:
        raise ValueError("the edm sampler needs an EDM run or a DDPM run (a discrete schedule)")
    options = {k: c.get(k, v) for k, v in dict(churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0).items()}
    method = c.get("method", "heun")
    return lambda f, x, rng: samplers.edm_sample(
        denoiser(f), sigmas, start * x, rng, method=method, **options
    )


# The config field that holds each sampler's number of steps (``num_steps`` for the others):
# ``build_sampler(..., num_steps=N)`` sets it, so ``--steps N`` means the same for every sampler.
STEP_FIELDS = {"ddpm": "ddpm_num_steps", "langevin": "steps_per_sigma"}


def build_sampler(config: ml_collections.ConfigDict, experiment: Experiment, **overrides):
    """Resolves ``config.sampling.sampler`` into ``sample(variables, rng, num) -> x_0``.

    Args:
      config: the run's config.
      experiment: from :func:`build_experiment`.
      **overrides: replace fields of ``config.sampling`` (``sampler="ddim"``); ``num_steps``
        sets the chosen sampler's step count, whatever its field (:data:`STEP_FIELDS`: the
        respaced steps of ddpm, the steps per noise level of langevin).

    Returns:
      A function of the model variables, a key and the (static) number of samples, returning
      ``[num, *data_shape]`` float samples in the model range. Jit it as a whole.
    """
    merged = ml_collections.ConfigDict(dict(config.sampling))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    sampler = overrides.get("sampler", merged.sampler)
    if "num_steps" in overrides:
        overrides[STEP_FIELDS.get(sampler, "num_steps")] = overrides.pop("num_steps")
    merged.update(overrides)
    merged.prediction = config.diffusion.get("prediction", "eps")
    merged.variance = config.diffusion.get("variance", "fixed_small")
    if merged.sampler not in SAMPLERS:
        raise ValueError(
            f"sampler must be one of {', '.join(sorted(SAMPLERS))}, got {merged.sampler!r}"
        )
    _check_fits(config.diffusion.kind, merged.sampler, name="sampler")
    sample_chain = SAMPLERS[merged.sampler](merged, experiment.process)

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

    def sample(state, rng, num, **overrides):
        chain = build_sampler(config, experiment, **overrides)
        return chain({"params": state.ema_params}, rng, num)

    return Family(
        init_state=functools.partial(initial_state, experiment, rng=run_key),
        train_step=_pure_step(experiment, ema=tcfg.ema_decay, ema_warmup=tcfg.ema_warmup),
        sample=sample,
        data_shape=experiment.data_shape,
        validate=_validation_bound(config, experiment),
        bound=_bound(config, experiment),
        likelihood=_likelihood(config, experiment),
        parts=experiment,
    )


diffusion_family = family  # the name of 0.2


def _ema_model(experiment: Experiment, state) -> Callable:
    """``model_fn(x, t)`` of the EMA parameters of ``state`` (no dropout)."""
    return functools.partial(experiment.model.apply, {"params": state.ema_params})


def _ddpm_bound(experiment, variance, prediction, state, x0, rng) -> dict:
    """:func:`jaxdiff.elbo.nll_bpd`, its per-timestep terms ``[B, T]`` under ``terms``."""
    out = elbo.nll_bpd(
        _ema_model(experiment, state), experiment.process, x0, rng, variance=variance,
        prediction=prediction,
    )
    return dict(total=out["total"], prior=out["prior"], diffusion=out["diffusion"],
                decoder=out["decoder"], terms=out["vb"])


def _process_bound(experiment, state, x0, rng) -> dict:
    return experiment.process.bound(_ema_model(experiment, state), x0, rng)


_LEARNED = ("learned", "learned_range")


def _bound(config, experiment: Experiment):
    """``bound(variance=None) -> Estimate``: a DDPM run's bound (its reverse variance may be
    changed between the fixed ones, or the learned ones, never across), or a process's own
    (VDM's, 256 draws averaged per example); None for a process without one."""
    diff = config.diffusion
    if isinstance(experiment.process, schedules.Schedule):
        trained = diff.get("variance", "fixed_small")

        def bound(*, variance=None) -> Estimate:
            variance = variance or trained
            if (variance in _LEARNED) != (trained in _LEARNED):
                raise ValueError(
                    f"variance {variance} does not fit this run, trained with "
                    f"config.diffusion.variance={trained!r} (learned and fixed variances are "
                    f"not interchangeable)"
                )
            fn = functools.partial(
                _ddpm_bound, experiment, variance, diff.get("prediction", "eps")
            )
            return Estimate(fn, "diffusion", {"variance": variance})

        return bound
    if hasattr(experiment.process, "bound"):
        fn = functools.partial(_process_bound, experiment)
        return lambda: Estimate(fn, f"{diff.kind} bound", draws=256)
    return None


def likelihood_parts(out: dict, x0) -> dict:
    """A change of variables' result (:func:`~jaxdiff.samplers.change_of_variables`: log-densities
    in nats) as the bound's parts in bits/dim: ``total``; ``prior``, the latent's density;
    ``diffusion``, the flow's log-determinant; ``decoder``, the dequantisation (-log2 of the
    bin width)."""
    nats_to_bits = -1.0 / (math.prod(x0.shape[1:]) * math.log(2.0))
    prior, diffusion = nats_to_bits * out["prior_logp"], nats_to_bits * out["delta_logp"]
    return dict(total=out["bpd"], prior=prior, diffusion=diffusion,
                decoder=out["bpd"] - prior - diffusion)


def _flow_likelihood(experiment, state, x0, rng) -> dict:
    out = experiment.process.likelihood(_ema_model(experiment, state), x0, rng)
    return likelihood_parts(out, x0)


def _ode_likelihood(experiment, ode_kwargs, state, x0, rng) -> dict:
    """:func:`~jaxdiff.samplers.ode_likelihood` of the probability-flow ODE of the run's
    process (a VDM's: the continuous process of its schedule)."""
    model_fn = _ema_model(experiment, state)
    process = experiment.process
    if hasattr(process, "ode_process"):
        process = process.ode_process(model_fn)
    out = samplers.ode_likelihood(model_fn, process, x0, rng, **dict(ode_kwargs))
    return likelihood_parts(out, x0)


def _likelihood(config, experiment: Experiment):
    """``likelihood(**ode_kwargs) -> Estimate``: a process's own exact likelihood (EDM, flow),
    else the probability-flow ODE's of a DDPM or VDM run; None for NCSN's noise levels."""
    process = experiment.process
    if hasattr(process, "likelihood"):
        fn = functools.partial(_flow_likelihood, experiment)
        return lambda: Estimate(fn, f"{config.diffusion.kind} ODE likelihood")
    if isinstance(process, schedules.Schedule) or hasattr(process, "ode_process"):
        return lambda **ode_kwargs: Estimate(
            functools.partial(_ode_likelihood, experiment, tuple(sorted(ode_kwargs.items()))),
            "PF-ODE likelihood",
        )
    return None


def _validation_bound(config, experiment: Experiment):
    """``validate(state, batch, rng) -> [B]``: the EMA model's bound on a held-out batch from
    ``K = config.training.validation.num_timesteps`` model calls per example. A DDPM run:
    :func:`jaxdiff.elbo.stratified_nll_bpd` (K stratified timesteps besides L_0); a process
    with its own bound estimate (VDM's): the mean of K of them. None for any other process."""
    vcfg = config.training.get("validation") or {}
    num = vcfg.get("num_timesteps", 100)
    process = experiment.process
    if config.diffusion.kind == "ddpm":

        def bound(model_fn, x0, rng):
            return elbo.stratified_nll_bpd(
                model_fn, process, x0, rng, num_timesteps=min(num, process.num_timesteps - 1),
                variance=config.diffusion.variance, prediction=config.diffusion.prediction,
            )["total"]

    elif hasattr(process, "bound"):

        def bound(model_fn, x0, rng):
            keys = jax.random.split(rng, num)
            return jnp.mean(jax.lax.map(lambda k: process.bound(model_fn, x0, k)["total"], keys), 0)

    else:
        return None

    def validate(state, batch, rng):
        model_fn = functools.partial(experiment.model.apply, {"params": state.ema_params})
        return bound(model_fn, data_lib.to_model_range(batch["x"]), rng)

    return validate


def _check_diffusion(c: Checker) -> None:
    """The fields of ``config.diffusion``, ``config.loss`` and ``config.sampling``."""
    c.one_of("diffusion.kind", sorted(PROCESSES))
    kind = c.get("diffusion.kind")
    PROCESSES[kind].check(c)
    c.one_of("loss.name", sorted(OBJECTIVES[kind]))
    c.real("loss.vlb_weight", low=0.0, optional=True)
    c.real("loss.gamma", low=0.0, low_open=True, optional=True)
    c.one_of("sampling.sampler", sorted(SAMPLERS))
    _check_fits(kind, c.get("sampling.sampler"), name="config.sampling.sampler")
    c.int("sampling.num_steps", minimum=1)
    c.real("sampling.eta", low=0.0)
    c.boolean("sampling.clip_denoised")
    c.one_of("sampling.order", (1, 2, 3))
    c.int("sampling.steps_per_sigma", minimum=1)
    c.real("sampling.step_lr", low=0.0, low_open=True)


def _check_fits(kind: str, sampler: str, *, name: str) -> None:
    """Checks that ``sampler`` fits a run of process ``kind`` (``config.diffusion.kind``).

    Raises:
      ValueError: naming ``name`` (the field or the option) and the samplers that fit.
    """
    fits = PROCESSES[kind].samplers
    if sampler not in fits:
        raise ValueError(
            f"{name}={sampler} does not fit this run's process (config.diffusion.kind={kind}); "
            f"it takes {', '.join(fits)}"
        )
