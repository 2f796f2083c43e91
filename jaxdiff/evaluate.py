"""Evaluation: the variational bound in bits/dim over a dataset split, its parts, the
probability-flow ODE likelihood, sample quality, a printed table and JSON.

The pieces, from the inside out:

* :func:`nll_per_example` runs :func:`jaxdiff.elbo.nll_bpd` (every term of Ho et al. 2020,
  eq. 5) over a dataset, batched and sharded over devices (a ``Mesh`` with a ``"data"`` axis;
  see :func:`jaxdiff.metrics.batching.map_batches`), fresh noise per batch.
* :func:`summarize_nll` reduces the per-example terms to the dataset's bits/dim and its
  standard error; :func:`evaluate_nll` is the two together.
* :func:`evaluate_run` is what ``jaxdiff eval --workdir DIR`` calls: the EMA model of a run on
  its test split, with the independent-pixel baseline (and, on request, the PF-ODE
  likelihood and sample quality) beside it.

Example::

    run = jaxdiff.train.load_run("runs/digits_ddpm")
    results = evaluate_run(run, seed=0)          # prints the table
    results["total_bpd"], results["stderr_bpd"]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxdiff import _checks, elbo
from jaxdiff._compile import as_pytree_fn, static_partial
from jaxdiff import data as data_lib
from jaxdiff.metrics.batching import as_array, map_batches

__all__ = [
    "nll_per_example",
    "summarize_nll",
    "evaluate_nll",
    "evaluate_ode_nll",
    "evaluate_likelihood",
    "evaluate_bound",
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
    total = np.asarray(terms["total"], np.float64)
    return dict(
        total_bpd=float(total.mean()),
        prior_bpd=float(np.mean(terms["prior"])),
        diffusion_bpd=float(np.mean(terms["diffusion"])),
        decoder_bpd=float(np.mean(terms["decoder"])),
        stderr_bpd=_stderr(total),
        num_examples=int(total.size),
        terms_bpd=np.mean(np.asarray(terms["vb"], np.float64), axis=0).tolist(),
    )


def evaluate_nll(model_fn: Callable, schedule, data, rng: jax.Array, **kwargs) -> dict:
    """:func:`summarize_nll` of :func:`nll_per_example` (same arguments)."""
    return summarize_nll(nll_per_example(model_fn, schedule, data, rng, **kwargs))


def evaluate_ode_nll(
    model_fn: Callable,
    schedule,
    data,
    rng: jax.Array,
    *,
    batch_size: int = 64,
    mesh=None,
    **ode_kwargs,
) -> dict:
    """The probability-flow ODE's likelihood of a dataset in bits/dim (Song et al. 2021,
    Sec. 4.3), by :func:`jaxdiff.samplers.ode_likelihood` with uniform dequantisation.

    Args:
      model_fn: must accept float timesteps (a U-Net with a sinusoidal embedding does).
      schedule, data, rng, batch_size, mesh: as in :func:`nll_per_example`.
      **ode_kwargs: options of :func:`jaxdiff.samplers.ode_likelihood` (``num_probes``,
        ``rtol``, ``atol``, ``method``, ...).

    Returns:
      ``ode_bpd``, ``ode_stderr_bpd`` and ``ode_num_examples``.
    """
    fn = static_partial(_ode_batch, **ode_kwargs)
    args = (as_pytree_fn(model_fn), schedule, rng)
    bpd = map_batches(fn, as_array(data), batch_size=batch_size, mesh=mesh, args=args)
    bpd = np.asarray(bpd, np.float64)
    return dict(
        ode_bpd=float(bpd.mean()), ode_stderr_bpd=_stderr(bpd), ode_num_examples=int(bpd.size)
    )


def _ode_batch(model_fn, schedule, rng, batch, index, **ode_kwargs):
    from jaxdiff import samplers

    x0 = data_lib.to_model_range(batch)
    key = jax.random.fold_in(rng, index)
    return samplers.ode_likelihood(model_fn, schedule, x0, key, **ode_kwargs)["bpd"]


def evaluate_likelihood(
    likelihood: Callable,
    model_fn: Callable,
    data,
    rng: jax.Array,
    *,
    batch_size: int = 64,
    mesh=None,
) -> dict:
    """The exact likelihood of a continuous flow (EDM's probability flow, flow matching) over a
    dataset in bits/dim, with uniform dequantisation, and its parts.

    Args:
      likelihood: ``likelihood(model_fn, x0, rng) -> dict`` as
        :func:`jaxdiff.samplers.change_of_variables` returns it (a run's
        ``experiment.process.likelihood``); hashable, it keys the compiled program.
      model_fn, data, rng, batch_size, mesh: as in :func:`nll_per_example`.

    Returns:
      The keys of :func:`summarize_nll`: ``total_bpd``; ``prior_bpd``, the prior's log density
      at the latent; ``diffusion_bpd``, the flow's log-determinant (the divergence integral);
      ``decoder_bpd``, the dequantisation term (-log2 of the bin width 2/256: 7 bits);
      ``stderr_bpd`` and ``num_examples``.
    """
    return evaluate_bound(
        static_partial(_likelihood_parts, likelihood), model_fn, data, rng,
        batch_size=batch_size, mesh=mesh,
    )


def _likelihood_parts(likelihood, model_fn, x0, rng) -> dict:
    out = likelihood(model_fn, x0, rng)
    nats_to_bits = -1.0 / (math.prod(x0.shape[1:]) * math.log(2.0))
    prior, diffusion = nats_to_bits * out["prior_logp"], nats_to_bits * out["delta_logp"]
    return dict(total=out["bpd"], prior=prior, diffusion=diffusion,
                decoder=out["bpd"] - prior - diffusion)


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
        draws one time and one noise each; on the digits, means from 1 or 32 draws per example
        differed from those of 512 by more than their standard errors across examples).

    Returns:
      ``total_bpd``, ``prior_bpd``, ``diffusion_bpd``, ``decoder_bpd`` (dataset means),
      ``stderr_bpd`` (of ``total_bpd``), ``num_examples`` and ``draws``.
    """
    _checks.positive_int("draws", draws)
    fn = static_partial(_bound_batch, bound, draws)
    args = (as_pytree_fn(model_fn), rng)
    terms = map_batches(fn, as_array(data), batch_size=batch_size, mesh=mesh, args=args)
    total = np.asarray(terms["total"], np.float64)
    return dict(
        total_bpd=float(total.mean()),
        **{f"{k}_bpd": float(np.mean(terms[k])) for k in ("prior", "diffusion", "decoder")},
        stderr_bpd=_stderr(total),
        num_examples=int(total.size),
        draws=draws,
    )


def _bound_batch(bound, draws, model_fn, rng, batch, index):
    x0 = data_lib.to_model_range(batch)
    keys = jax.random.split(jax.random.fold_in(rng, index), draws)
    terms = jax.lax.map(lambda key: bound(model_fn, x0, key), keys)
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


def _with_steps(sample_steps, num_steps, state, rng, num):
    return sample_steps(state, rng, num, num_steps)


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
    bound_draws: int = 256,
    log: Callable[[str], None] = print,
) -> dict:
    """Evaluates a trained run (:func:`jaxdiff.train.load_run`; EMA parameters): what
    ``jaxdiff eval`` reports.

    Args:
      run: the loaded run: a diffusion (DDPM) run or a VAE (``config.family = "vae"``); a GAN
        defines no likelihood and is evaluated by its samples only (``num_samples`` > 0).
      seed: the evaluation seed (forward-process noise, probes, samples).
      split: the dataset split to evaluate on.
      batch_size: examples per batch (all devices together).
      max_examples: evaluate on the first examples of the split only.
      variance: the reverse variance for the bound; the run's ``config.diffusion.variance``
        when None.
      ode: also the probability-flow ODE likelihood (slow: an adaptive solve per batch).
      num_samples: draw this many samples and report sample quality (the digits classifier's
        figures for digits; FID when ``fid_stats`` is given).
      sampler, num_steps: override the run's sampling config for those samples.
      fid_stats: an ``.npz`` of reference statistics
        (:func:`jaxdiff.metrics.fid.dataset_statistics`).
      iwae_samples: k of a VAE's importance-weighted bound (the run's ``config.vae.iwae_samples``
        when None).
      bound_draws: a VDM run's estimates of the bound per example, averaged
        (:func:`evaluate_bound`'s ``draws``).
      log: where the table goes.

    Returns:
      A JSON-ready dict with the keys of :func:`summarize_nll` (a VAE:
      :func:`jaxdiff.generative.families.summarize_vae_nll`, with ``iwae_bpd``),
      ``pixel_baseline_bpd`` (for image data), the optional ``ode_*`` / sample-quality keys,
      and ``step``, ``split``, ``seed``, ``variance``, ``dataset``.
    """
    cfg = run.config
    family = cfg.get("family", "diffusion")
    rng = jax.random.PRNGKey(seed)
    nll_key, ode_key, sample_key = jax.random.split(rng, 3)
    results = {}
    if family in ("gan", "fewstep"):
        if not num_samples:
            what = {"gan": "a GAN", "fewstep": "a few-step run"}[family]
            raise ValueError(f"{what} defines no likelihood: evaluate its samples with --num_samples N")
        _check_diffusion_options(f"a {family} run", variance=variance, ode=ode)
    else:
        images = split_images(cfg, split)[:max_examples]
        batch_size = min(batch_size, images.shape[0])
        if family == "vae":
            _check_diffusion_options("a vae run", variance=variance, ode=ode)
            results = _vae_nll(run, images, split, nll_key, batch_size, iwae_samples, log)
        else:
            results = _diffusion_nll(
                run, images, split, nll_key, ode_key, batch_size, variance, ode, bound_draws, log
            )
    if num_samples:
        if run.experiment is None and sampler is not None:
            raise ValueError(f"sampler applies to diffusion runs, not to a {family} run")
        if run.experiment is None and num_steps is not None and run.family.sample_steps is None:
            raise ValueError(f"num_steps applies to diffusion and few-step runs, not to a {family} run")
        results.update(
            _sample_quality(run, num_samples, sample_key, sampler, num_steps, fid_stats, log)
        )
    results.update(step=int(run.step), split=split, seed=seed, dataset=cfg.data.dataset)
    results.setdefault("variance", variance)
    return results


def _check_diffusion_options(what: str, *, variance, ode) -> None:
    if variance is not None or ode:
        raise ValueError(f"variance and ode apply to diffusion runs, not to {what}")


def _pixel_baseline_row(cfg, images, results) -> list:
    """The independent-pixel baseline on ``images`` (its bpd goes into ``results``)."""
    from jaxdiff.metrics import pixel_baseline

    train = split_images(cfg, "train")
    levels = np.unique(train) if cfg.data.dataset == "digits" else None
    baseline = np.asarray(
        pixel_baseline.pixel_nll_bpd(
            pixel_baseline.fit_pixel_categoricals(train, levels=levels), images
        )
    )
    results["pixel_baseline_bpd"] = float(baseline.mean())
    return ["independent pixels", float(baseline.mean()), _stderr(baseline), "", "", ""]


def _diffusion_nll(
    run, images, split, nll_key, ode_key, batch_size, variance, ode, bound_draws, log
) -> dict:
    """A DDPM or VDM run's bound, or the exact likelihood of a process that has one (EDM,
    flow)."""
    cfg = run.config
    bound = cfg.diffusion.kind == "ddpm"
    process_bound = getattr(run.experiment.process, "bound", None)  # VDM's
    likelihood = getattr(run.experiment.process, "likelihood", None)
    if not bound and process_bound is None and likelihood is None:
        raise ValueError(
            "bits/dim needs a run with a bound (config.diffusion.kind 'ddpm' or 'vdm') or a "
            f"process with an exact likelihood ('edm' or 'flow'), got {cfg.diffusion.kind!r}"
        )
    variance = variance or cfg.diffusion.get("variance", "fixed_small")
    if bound:
        results = evaluate_nll(
            run.model_fn,
            run.schedule,
            images,
            nll_key,
            batch_size=batch_size,
            variance=variance,
            prediction=cfg.diffusion.get("prediction", "eps"),
        )
        rows = [_nll_rows(f"diffusion (step {run.step})", results)]
    elif process_bound is not None:
        results = evaluate_bound(
            process_bound, run.model_fn, images, nll_key, batch_size=batch_size, draws=bound_draws
        )
        rows = [_nll_rows(f"{cfg.diffusion.kind} bound (step {run.step}, {bound_draws} draws)", results)]
    else:
        results = evaluate_likelihood(
            likelihood, run.model_fn, images, nll_key, batch_size=min(64, images.shape[0])
        )
        rows = [_nll_rows(f"{cfg.diffusion.kind} ODE likelihood (step {run.step})", results)]
    if images.dtype == np.uint8:
        rows.append(_pixel_baseline_row(cfg, images, results))
    if ode and likelihood is None:  # a bound model: its probability-flow ODE as well
        process = run.schedule if bound else run.experiment.process.ode_process(run.model_fn)
        results.update(
            evaluate_ode_nll(
                run.model_fn, process, images, ode_key, batch_size=min(64, images.shape[0])
            )
        )
        rows.append(
            ["PF-ODE likelihood", results["ode_bpd"], results["ode_stderr_bpd"], "", "", ""]
        )
    variance_note = f", variance {variance}" if bound else ""
    log(f"{cfg.data.dataset} {split} split, {results['num_examples']} examples{variance_note}")
    log(format_table(rows, header=NLL_HEADER))
    if not bound and process_bound is None:
        log("(an exact likelihood: L_T is the prior, sum L_t-1 the flow's log-determinant, L_0 "
            "the dequantisation)")
    results["variance"] = variance
    return results


def _vae_nll(run, images, split, rng, batch_size, iwae_samples, log) -> dict:
    """The VAE's -ELBO (prior = KL, decoder = reconstruction) and its IWAE bound."""
    from jaxdiff.generative import families

    cfg = run.config
    k = iwae_samples or cfg.vae.iwae_samples
    model = families.vae_model(cfg, images.shape[1:])
    terms = families.vae_nll_per_example(
        model, run.variables["params"], images, rng, iwae_samples=k, batch_size=batch_size
    )
    results = families.summarize_vae_nll(terms, iwae_samples=k)
    rows = [
        _nll_rows(f"VAE -ELBO (step {run.step})", results),
        [f"VAE IWAE, k = {k}", results["iwae_bpd"], results["iwae_stderr_bpd"], "", "", ""],
        _pixel_baseline_row(cfg, images, results),
    ]
    log(f"{cfg.data.dataset} {split} split, {results['num_examples']} examples; L_T = KL, L_0 = -E log p(x|z)")
    log(format_table(rows, header=NLL_HEADER))
    return results


def _sample_quality(run, num, rng, sampler, num_steps, fid_stats, log) -> dict:
    from jaxdiff import train
    from jaxdiff.metrics import digits, fid

    if run.experiment is None:  # another family: its sampler on the whole state
        sample_fn = run.family.sample
        if num_steps is not None:
            sample_fn = functools.partial(_with_steps, run.family.sample_steps, num_steps)
        samples = data_lib.to_uint8(generate(sample_fn, run.state, num, rng))
    else:
        sample_fn = train.build_sampler(
            run.config, run.experiment, sampler=sampler, num_steps=num_steps
        )
        samples = data_lib.to_uint8(generate(sample_fn, run.variables, num, rng))
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
