"""Every field of a run's config checked at the entry point, before anything is written.

:func:`check_config` raises one ``ValueError`` that names the field by its dotted name
(``config.training.batch_size``) and says what is expected; the driver calls it first, so a
bad value never surfaces as a traceback from inside JAX after files were written. Fields of
sections a family does not use are not looked at; a family's own sections (``config.diffusion``,
``config.vae``, ...) are its builder's to check, with :class:`Checker`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import ml_collections

__all__ = ["check_config", "Checker", "DTYPES"]

DTYPES = ("float32", "bfloat16", "float16")


class Checker:
    """Checks fields of a config by their dotted names; each check raises one ``ValueError``
    naming the field and what it expects, and passes over a field the config does not have."""

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

def check_config(config: ml_collections.ConfigDict) -> None:
    """Checks every field the driver reads (the split of the batch over the devices is checked
    by the driver, which knows the mesh; a family checks its own fields when it is built).

    Args:
      config: the run's config.

    Raises:
      ValueError: for the first bad field, named by its dotted path, with what is expected.
    """
    c = Checker(config)
    c.int("seed", minimum=0)
    if isinstance(config.get("seed"), int) and config.seed >= 2**32:
        c.fail("seed", "an integer in [0, 2^32)", config.seed)
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
