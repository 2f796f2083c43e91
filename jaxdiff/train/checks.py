"""Every field of a run's config checked at the entry point, before anything is written.

:func:`check_config` raises one ``ValueError`` that names the field by its dotted name
(``config.training.batch_size``) and says what is expected; the driver calls it first, so a
bad value never surfaces as a traceback from inside JAX after files were written. Fields of
sections a family does not use are not looked at; a family's own section (``config.vae``, ...)
is its builder's to check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import ml_collections

from jaxdiff.diffusion import PREDICTIONS

__all__ = ["check_config", "check_sampler", "DTYPES", "SAMPLERS_OF_KIND"]

DTYPES = ("float32", "bfloat16", "float16")
_VARIANCES = ("fixed_small", "fixed_large", "learned", "learned_range")


class _Checker:
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def get(self, dotted: str):
        node = self.config
        for key in dotted.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or key not in node:
                return _MISSING
            node = node[key]
        return node

    def fail(self, dotted: str, expected: str, value) -> None:
        raise ValueError(f"config.{dotted} must be {expected}, got {value!r}")

    def int(self, dotted: str, *, minimum: int | None = None, optional: bool = False) -> None:
        v = self.get(dotted)
        if v is _MISSING or (optional and v is None):
            return
        if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
            what = "an integer" if minimum is None else f"an integer >= {minimum}"
            self.fail(dotted, what + (" or None" if optional else ""), v)

    def real(
        self,
        dotted: str,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
        optional: bool = False,
    ) -> None:
        v = self.get(dotted)
        if v is _MISSING or (optional and v is None):
            return
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
            hi = "" if high is None else f"{high}" + (")" if high_open else "]")
            interval = f"a finite number in {lo}{hi}" if lo and hi else (
                f"a finite number {'>' if low_open else '>='} {low}" if lo else "a finite number"
            )
            self.fail(dotted, interval + (" or None" if optional else ""), v)

    def one_of(self, dotted: str, allowed: Iterable) -> None:
        v = self.get(dotted)
        allowed = tuple(allowed)
        if v is not _MISSING and v not in allowed:
            self.fail(dotted, f"one of {', '.join(map(str, allowed))}", v)

    def boolean(self, dotted: str) -> None:
        v = self.get(dotted)
        if v is not _MISSING and not isinstance(v, bool):
            self.fail(dotted, "True or False", v)

    def text(self, dotted: str, *, optional: bool = False) -> None:
        v = self.get(dotted)
        if v is _MISSING or (optional and v is None):
            return
        if not isinstance(v, str) or not v:
            self.fail(dotted, "a non-empty string" + (" or None" if optional else ""), v)


_MISSING = object()

# The samplers that fit each noise process (``config.diffusion.kind``): a discrete schedule's
# chains and solvers, annealed Langevin on NCSN's noise levels, and each continuous process's
# own sampler.
SAMPLERS_OF_KIND = {
    "ddpm": ("ddpm", "ddim", "dpm_solver", "ode", "edm"),
    "ncsn": ("langevin",),
    "edm": ("edm",),
    "flow": ("flow",),
    "vdm": ("vdm",),
}


def check_sampler(kind: str, sampler: str, *, name: str = "config.sampling.sampler") -> None:
    """Checks that ``sampler`` fits a run of process ``kind`` (``config.diffusion.kind``).

    Raises:
      ValueError: naming ``name`` (the field or the flag) and the samplers that fit.
    """
    fits = SAMPLERS_OF_KIND.get(kind)
    if fits is not None and sampler not in fits:
        raise ValueError(
            f"{name}={sampler} does not fit this run's process (config.diffusion.kind={kind}); "
            f"it takes {', '.join(fits)}"
        )


def _check_diffusion(c: _Checker) -> None:
    from jaxdiff import schedules
    from jaxdiff.train.experiment import OBJECTIVES, PROCESSES, SAMPLERS

    c.one_of("diffusion.kind", sorted(PROCESSES))
    kind = c.get("diffusion.kind")
    if kind == "ddpm":
        c.one_of("diffusion.schedule", sorted(schedules._NAMED))
        c.int("diffusion.num_timesteps", minimum=1)
        c.one_of("diffusion.prediction", PREDICTIONS)
        c.one_of("diffusion.variance", _VARIANCES)
        c.int("sampling.ddpm_num_steps", minimum=1, optional=True)
        num_steps, total = c.get("sampling.ddpm_num_steps"), c.get("diffusion.num_timesteps")
        if isinstance(num_steps, int) and num_steps > total:
            c.fail("sampling.ddpm_num_steps", f"at most config.diffusion.num_timesteps={total}", num_steps)
    elif kind == "ncsn":
        c.real("diffusion.sigma_min", low=0.0, low_open=True)
        c.real("diffusion.sigma_max", low=0.0, low_open=True)
        c.int("diffusion.num_sigmas", minimum=1)
        low, high = c.get("diffusion.sigma_min"), c.get("diffusion.sigma_max")
        if high <= low:
            c.fail("diffusion.sigma_max", f"> config.diffusion.sigma_min={low}", high)
    elif kind == "vdm":
        _check_vdm(c)
    if kind in OBJECTIVES:
        c.one_of("loss.name", sorted(OBJECTIVES[kind]))
    c.real("loss.vlb_weight", low=0.0, optional=True)
    c.real("loss.gamma", low=0.0, low_open=True, optional=True)
    c.one_of("sampling.sampler", sorted(SAMPLERS))
    if kind in SAMPLERS_OF_KIND:
        check_sampler(kind, c.get("sampling.sampler"))
    c.int("sampling.num_steps", minimum=1)
    c.real("sampling.eta", low=0.0)
    c.boolean("sampling.clip_denoised")
    c.one_of("sampling.order", (1, 2, 3))
    c.int("sampling.steps_per_sigma", minimum=1)
    c.real("sampling.step_lr", low=0.0, low_open=True)


def _check_vdm(c: _Checker) -> None:
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


def check_config(config: ml_collections.ConfigDict) -> None:
    """Checks every field the driver and the diffusion family read (the split of the batch
    over the devices is checked by the driver, which knows the mesh).

    Args:
      config: the run's config.

    Raises:
      ValueError: for the first bad field, named by its dotted path, with what is expected.
    """
    from jaxdiff.train.family import FAMILIES

    c = _Checker(config)
    c.int("seed", minimum=0)
    if isinstance(config.get("seed"), int) and config.seed >= 2**32:
        c.fail("seed", "an integer in [0, 2^32)", config.seed)
    c.one_of("family", sorted(FAMILIES))
    c.text("name")
    c.text("data.dataset")
    c.text("data.split")
    c.text("data.data_dir", optional=True)
    c.boolean("data.download")
    c.boolean("data.random_flip")
    c.int("data.image_size", minimum=1, optional=True)
    c.one_of("data.bad_images", ("error", "skip"))
    c.int("data.split_seed", minimum=0)
    c.real("data.test_fraction", low=0.0, high=1.0, high_open=True)
    c.real("data.valid_fraction", low=0.0, high=1.0, high_open=True)
    c.text("model.name")
    c.one_of("model.dtype", DTYPES)
    c.int("model.ch", minimum=1)  # a U-Net's base width (absent for other networks)
    c.real("model.dropout", low=0.0, high=1.0, high_open=True)
    c.real("optim.learning_rate", low=0.0, low_open=True)
    c.int("optim.warmup_steps", minimum=0)
    c.real("optim.grad_clip", low=0.0, low_open=True, optional=True)
    c.real("optim.b1", low=0.0, high=1.0, high_open=True)
    c.real("optim.b2", low=0.0, high=1.0, high_open=True)
    c.real("optim.eps", low=0.0, low_open=True)
    for field in ("batch_size", "num_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        c.int(f"training.{field}", minimum=1)
    c.int("training.sample_every", minimum=0)
    c.real("training.ema_decay", low=0.0, high=1.0)
    for field in ("every", "patience"):  # absent in runs saved before early stopping
        c.int(f"training.validation.{field}", minimum=0)
    c.int("training.validation.num_timesteps", minimum=1)
    c.int("training.validation.batch_size", minimum=1)
    c.text("training.validation.split")
    c.boolean("training.ema_warmup")
    c.int("sampling.num_samples", minimum=0)
    if config.get("family", "diffusion") == "diffusion":
        _check_diffusion(c)
