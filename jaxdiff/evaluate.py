"""Evaluation: the variational bound in bits/dim over a dataset split, its parts, the
probability-flow ODE likelihood, sample quality, a printed table and JSON.

The pieces, from the inside out:

* :func:`nll_per_example` runs :func:`jaxdiff.elbo.nll_bpd` (every term of Ho et al. 2020,
  eq. 5) over a dataset, batched and sharded over devices (a ``Mesh`` with a ``"data"`` axis;
  see :func:`jaxdiff.metrics.batching.map_batches`), fresh noise per batch.
* :func:`summarize_nll` reduces the per-example terms to the dataset's bits/dim and its
  standard error; :func:`evaluate_nll` is the two together.
* :func:`evaluate_estimate` runs a model family's bound or likelihood
  (:class:`jaxdiff.engine.Estimate`) over a dataset; :func:`evaluate_bound` any per-example
  bound of a model function.
* :func:`evaluate_run` is what ``jaxdiff eval --workdir DIR`` calls, for a run of any family:
  its bound (or its exact likelihood) on the test split, with the independent-pixel baseline
  (and, on request, the family's likelihood beside its bound, and sample quality).

Example::

    run = jaxdiff.train.load_run("runs/digits_ddpm")
    results = evaluate_run(run, seed=0)          # prints the table
    results["total_bpd"], results["stderr_bpd"]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxdiff import _checks, elbo
from jaxdiff import data as data_lib
from jaxdiff._compile import as_pytree_fn, static_partial
from jaxdiff.engine.family import Estimate, Family, bind_options
from jaxdiff.metrics import digits, fid, pixel_baseline
from jaxdiff.metrics.batching import as_array, map_batches

__all__ = [
    "nll_per_example",
    "summarize_nll",
    "evaluate_nll",
    "evaluate_bound",
    "evaluate_estimate",
    "generate",
    "split_images",
    "format_table",
    "evaluate_run",
]


def nll_per_example(
    model_fn: Callable,
    schedule,
    data,
    rng: jax.Array,
    *,
    batch_size: int = 256,
    variance: str = "fixed_small",
    prediction: str = "eps",
    clip_denoised: bool = True,
    mesh=None,
) -> dict[str, np.ndarray]:
    """Every term of the bound for every example of a dataset, in bits/dim.

    Args:
      model_fn: ``model_fn(x_t, t) -> output`` (parameters bound).
      schedule: the schedule the model was trained with.
      data: ``[N, ...]`` uint8 images (or floats in [-1, 1] on the 8-bit grid), or a data
        source of ``{"x": ...}`` examples.
      rng: key; batch i uses ``fold_in(rng, i)``.
      batch_size: examples per batch over all devices (a multiple of the device count).
      variance, prediction, clip_denoised: as in :func:`jaxdiff.elbo.nll_bpd`.
      mesh: a mesh with a ``"data"`` axis (all devices when None).

    Returns:
      numpy arrays: ``total``, ``prior``, ``decoder``, ``diffusion`` ``[N]`` and ``vb``
      ``[N, T]``, as :func:`jaxdiff.elbo.nll_bpd` returns them.
    """

    fn = static_partial(
        _nll_batch, variance=variance, prediction=prediction, clip_denoised=clip_denoised
    )
    args = (as_pytree_fn(model_fn), schedule, rng)
    return map_batches(fn, as_array(data), batch_size=batch_size, mesh=mesh, args=args)


def _nll_batch(model_fn, schedule, rng, batch, index, **options):
    """The bound of one batch (fresh noise per batch); ``model_fn``'s parameters are arguments
    of the compiled program, so one compilation serves every checkpoint."""
    x0 = data_lib.to_model_range(batch)
    return elbo.nll_bpd(model_fn, schedule, x0, jax.random.fold_in(rng, index), **options)


def _stderr(values: np.ndarray) -> float:
    """Standard error of the mean, std / sqrt(N) (ddof = 1); 0 for a single value."""
    return float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0


def summarize_nll(terms: dict[str, np.ndarray]) -> dict:
    """Dataset means of the per-example terms of :func:`nll_per_example`.

    Returns:
      A JSON-ready dict: ``total_bpd``, ``prior_bpd`` (L_T), ``diffusion_bpd`` (the sum of
      L_{t-1}, t > 1), ``decoder_bpd`` (L_0), ``stderr_bpd`` (the standard error of
      ``total_bpd`` over the examples: std / sqrt(N)), ``num_examples`` and ``terms_bpd``
      (the mean of each term over the examples, ``[T]``: L_0, L_1, ..., L_{T-1}).
    """
    terms = dict(terms)
    terms["terms"] = terms.pop("vb")
    return _summary(terms)


def evaluate_nll(model_fn: Callable, schedule, data, rng: jax.Array, **kwargs) -> dict:
    """:func:`summarize_nll` of :func:`nll_per_example` (same arguments)."""
    return summarize_nll(nll_per_example(model_fn, schedule, data, rng, **kwargs))


def evaluate_bound(
    bound: Callable, model_fn: Callable, data, rng, *, batch_size=64, mesh=None, draws: int = 1
):
    """A per-example likelihood or bound given in parts, over a dataset, in bits/dim.

    Args:
      bound: ``bound(model_fn, x0, rng) -> dict(total, prior, diffusion, decoder)``, each
        ``[B]`` bits/dim, x0 in [-1, 1] (a VDM run's ``experiment.process.bound``:
        :func:`jaxdiff.losses.vdm_loss`); hashable, it keys the compiled program.
      model_fn, data, rng, batch_size, mesh: as in :func:`nll_per_example`.
      draws: independent estimates averaged per example (a Monte Carlo bound such as VDM's
        draws one time and one noise each). ``stderr_bpd`` is across examples only; the draws'
        own error is shared by the examples of a draw (on the digits VDM it adds about a fifth:
        ``experiments/vdm_bound_uncertainty.py``).

    Returns:
      ``total_bpd``, ``prior_bpd``, ``diffusion_bpd``, ``decoder_bpd`` (dataset means),
      ``stderr_bpd`` (of ``total_bpd``), ``num_examples`` and ``draws``.
    """
    _checks.positive_int("draws", draws)
    fn = static_partial(_bound_batch, bound, draws)
    args = (as_pytree_fn(model_fn), rng)
    terms = map_batches(fn, as_array(data), batch_size=batch_size, mesh=mesh, args=args)
    return dict(_summary(terms), draws=draws)


def _bound_batch(bound, draws, model_fn, rng, batch, index):
    """The bound of one batch, ``draws`` estimates averaged (one draw: the batch's own key)."""
    x0 = data_lib.to_model_range(batch)
    key = jax.random.fold_in(rng, index)
    if draws == 1:
        return bound(model_fn, x0, key)
    terms = jax.lax.map(lambda k: bound(model_fn, x0, k), jax.random.split(key, draws))
    return jax.tree.map(lambda v: v.mean(0), terms)


def generate(
    sample_fn: Callable, variables, num: int, rng: jax.Array, *, batch_size: int = 256, mesh=None
) -> np.ndarray:
    """``num`` samples from ``sample_fn(variables, rng, n) -> [n, ...]`` (as
    :func:`jaxdiff.train.build_sampler` returns it), in batches sharded over the devices;
    batch i uses ``fold_in(rng, i)``. Returns a numpy array ``[num, ...]``. The variables are
    arguments of the compiled program: one compilation per ``sample_fn`` and shapes."""
    _checks.positive_int("num", num)
    fn = static_partial(_sample_batch, sample_fn)
    rows = np.arange(num)
    return map_batches(fn, rows, batch_size=min(batch_size, num), mesh=mesh, args=(variables, rng))


def _sample_batch(sample_fn, variables, rng, rows, index):
    return sample_fn(variables, jax.random.fold_in(rng, index), rows.shape[0])


def split_images(config, split: str) -> np.ndarray:
    """The examples of the run's dataset ``split`` as one host array (uint8 for images)."""
    return as_array(data_lib.config_source(config.data, split=split))


def format_table(rows: Sequence[Sequence], *, header: Sequence[str]) -> str:
    """A plain-text table: floats with 4 decimals (below 1e-3: 2 significant digits), columns
    padded to their widest cell."""

    def cell(v):
        if not isinstance(v, float):
            return str(v)
        return f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"

    cells = [list(map(str, header))] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _nll_rows(name: str, r: dict) -> list:
    return [
        name,
        r["total_bpd"],
        r["stderr_bpd"],
        r["prior_bpd"],
        r["diffusion_bpd"],
        r["decoder_bpd"],
    ]


NLL_HEADER = ("model", "bits/dim", "stderr", "L_T", "sum L_t-1", "L_0")


def evaluate_estimate(
    estimate: Estimate, state, data, rng, *, batch_size: int = 256, mesh=None, draws=None
) -> dict:
    """A family's :class:`~jaxdiff.engine.family.Estimate` over a dataset, in bits/dim.

    Args:
      estimate: from the family's ``bound()`` or ``likelihood()``.
      state: the run's train state (an argument of the compiled program).
      data, rng, batch_size, mesh: as in :func:`nll_per_example`.
      draws: estimates averaged per example (None: the estimate's own).

    Returns:
      ``total_bpd``, ``prior_bpd``, ``diffusion_bpd``, ``decoder_bpd``, ``stderr_bpd``,
      ``num_examples``, ``draws``; for every other ``[B]`` entry ``k``, ``k_bpd`` and
      ``k_stderr_bpd``; for a ``[B, T]`` entry, ``k_bpd`` the mean of each term (a DDPM run's
      ``terms_bpd``: L_0, ..., L_{T-1}); and the estimate's ``info``.
    """
    draws = draws or estimate.draws
    _checks.positive_int("draws", draws)
    fn = static_partial(_bound_batch, estimate.fn, draws)
    terms = map_batches(fn, as_array(data), batch_size=batch_size, mesh=mesh, args=(state, rng))
    results = _summary(terms)
    results.update(draws=draws, **estimate.info)
    return results


_PARTS = ("total", "prior", "diffusion", "decoder")


def _summary(terms: dict) -> dict:
    """Dataset means (and standard errors) of per-example terms in bits/dim."""
    total = np.asarray(terms["total"], np.float64)
    results = dict(
        total_bpd=float(total.mean()),
        **{f"{k}_bpd": float(np.mean(terms[k])) for k in _PARTS[1:]},
        stderr_bpd=_stderr(total),
        num_examples=int(total.size),
    )
    for key, value in terms.items():
        value = np.asarray(value, np.float64)
        if key in _PARTS:
            continue
        if value.ndim == 1:
            results.update({f"{key}_bpd": float(value.mean()), f"{key}_stderr_bpd": _stderr(value)})
        else:
            results[f"{key}_bpd"] = value.mean(axis=0).tolist()
    return results


def evaluate_run(
    run,
    *,
    seed: int = 0,
    split: str = "test",
    batch_size: int = 256,
    max_examples: int | None = None,
    variance: str | None = None,
    ode: bool = False,
    num_samples: int = 0,
    sampler: str | None = None,
    num_steps: int | None = None,
    fid_stats=None,
    iwae_samples: int | None = None,
    bound_draws: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Evaluates a trained run of any family (:func:`jaxdiff.train.load_run`; EMA parameters):
    what ``jaxdiff eval`` reports.

    Its family's bound (a diffusion run's ELBO, a VAE's -ELBO and IWAE), or its exact
    likelihood when it has no bound (EDM, flow matching); a family with neither (a GAN) is
    evaluated by its samples only (``num_samples`` > 0).

    Args:
      run: the loaded run.
      seed: the evaluation seed (forward-process noise, probes, samples).
      split: the dataset split to evaluate on.
      batch_size: examples per batch (all devices together).
      max_examples: evaluate on the first examples of the split only.
      variance, iwae_samples: options of the family's bound (a DDPM run's reverse variance, a
        VAE's k of the importance-weighted bound); None: the run's config.
      ode: also the family's likelihood beside its bound (the probability-flow ODE; slow).
      num_samples: draw this many samples and report sample quality (the digits classifier's
        figures for digits; FID when ``fid_stats`` is given).
      sampler, num_steps: options of the family's sampler for those samples.
      fid_stats: an ``.npz`` of reference statistics
        (:func:`jaxdiff.metrics.fid.dataset_statistics`).
      bound_draws: estimates of the bound averaged per example (None: the family's; VDM 256).
      log: where the table goes.

    Returns:
      A JSON-ready dict with the keys of :func:`evaluate_estimate` (``total_bpd``,
      ``stderr_bpd``, ...), ``pixel_baseline_bpd`` (for image data), the optional ``ode_*`` /
      sample-quality keys, and ``step``, ``split``, ``seed``, ``variance``, ``dataset``.

    Raises:
      ValueError: an option the run's family does not take, or nothing to evaluate.
    """
    family, cfg = run.family, run.config
    nll_key, ode_key, sample_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    estimate = _main_estimate(family, variance=variance, iwae_samples=iwae_samples)
    if ode and (family.likelihood is None or family.bound is None):
        if family.likelihood is None:
            raise ValueError("ode does not apply to this run: its family has no likelihood")
        ode = False  # its likelihood is the main result already
    if estimate is None and not num_samples:
        raise ValueError(
            "this run's family defines no likelihood or bound: evaluate its samples with "
            "--num_samples N"
        )
    sample = bind_options(family.sample, "sampler", sampler=sampler, num_steps=num_steps)
    if num_samples and (sampler or num_steps):  # bad options fail now, not after the bound
        jax.eval_shape(lambda state, key: sample(state, key, 2), run.state, sample_key)
    results = {}
    if estimate is not None:
        results = _likelihood_table(run, estimate, split, max_examples, batch_size, bound_draws,
                                    nll_key, ode_key if ode else None, log)
    if num_samples:
        results.update(_sample_quality(run, sample, num_samples, sample_key, fid_stats, log))
    results.update(step=int(run.step), split=split, seed=seed, dataset=cfg.data.dataset)
    results.setdefault("variance", variance)
    return results


def _main_estimate(family: Family, **options) -> Estimate | None:
    """The family's bound with ``options``, or its likelihood when it has no bound."""
    if family.bound is not None:
        return bind_options(family.bound, "bound", **options)()
    given = [k for k, v in options.items() if v is not None]
    if given:
        raise ValueError(f"{given[0]} does not apply to this run: its family has no bound")
    return None if family.likelihood is None else family.likelihood()


def _likelihood_table(
    run, estimate, split, max_examples, batch_size, draws, nll_key, ode_key, log
) -> dict:
    """``estimate`` (and, with ``ode_key``, the family's likelihood) on the split, logged as a
    table beside the independent-pixel baseline."""
    cfg, step = run.config, run.step
    images = split_images(cfg, split)[:max_examples]
    batch_size = min(batch_size, images.shape[0])
    results = evaluate_estimate(
        estimate, run.state, images, nll_key, batch_size=batch_size, draws=draws
    )
    draws_note = f", {results['draws']} draws" if results["draws"] > 1 else ""
    rows = [_nll_rows(f"{estimate.label} (step {step}{draws_note})", results)]
    rows += [[f"{estimate.label}: {k[:-4]}", results[k], results[f"{k[:-4]}_stderr_bpd"], "", "", ""]
             for k in results if f"{k[:-4]}_stderr_bpd" in results]
    if images.dtype == np.uint8:
        rows.append(_pixel_baseline_row(cfg, images, results))
    if ode_key is not None:
        ode = evaluate_estimate(run.family.likelihood(), run.state, images, ode_key,
                                batch_size=min(64, images.shape[0]))
        results.update(ode_bpd=ode["total_bpd"], ode_stderr_bpd=ode["stderr_bpd"],
                       ode_num_examples=ode["num_examples"])
        rows.append(["PF-ODE likelihood", ode["total_bpd"], ode["stderr_bpd"], "", "", ""])
    notes = "".join(f", {k} {v}" for k, v in estimate.info.items())
    log(f"{cfg.data.dataset} {split} split, {results['num_examples']} examples{notes}")
    log(format_table(rows, header=NLL_HEADER))
    if run.family.bound is None:
        log("(an exact likelihood: L_T is the prior, sum L_t-1 the flow's log-determinant, L_0 "
            "the dequantisation)")
    return results


def _pixel_baseline_row(cfg, images, results) -> list:
    """The independent-pixel baseline on ``images`` (its bpd goes into ``results``)."""
    train = split_images(cfg, "train")
    levels = np.unique(train) if cfg.data.dataset == "digits" else None
    baseline = np.asarray(
        pixel_baseline.pixel_nll_bpd(
            pixel_baseline.fit_pixel_categoricals(train, levels=levels), images
        )
    )
    results["pixel_baseline_bpd"] = float(baseline.mean())
    return ["independent pixels", float(baseline.mean()), _stderr(baseline), "", "", ""]


def _sample_quality(run, sample_fn, num, rng, fid_stats, log) -> dict:
    """``num`` samples of the family's sampler: the digits classifier's figures, FID."""
    samples = data_lib.to_uint8(generate(sample_fn, run.state, num, rng))
    out = {"num_samples": num}
    if run.config.data.dataset == "digits":
        quality = digits.sample_quality(samples)
        out.update({f"digits_{k}": v for k, v in quality.items()})
        log(
            f"digits Fréchet distance {quality['fd']:.3f}, "
            f"classifier score {quality['score']:.3f}, "
            f"confidence {quality['confidence']:.3f}"
        )
    if fid_stats is not None:
        out["fid"] = fid.fid_from_samples(samples, fid.load_statistics(fid_stats))
        log(f"FID {out['fid']:.3f} against {fid_stats}")
    return out
