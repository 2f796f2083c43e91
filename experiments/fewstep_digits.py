"""Few-step generation on the digits: the digits Fréchet distance, class shares and wall time at
1, 2 and 4 network evaluations of consistency training, consistency distillation, MeanFlow
and reflow + distillation, beside their EDM teacher at its best sampler (Heun, 18 steps, 35
evaluations) and DPM-Solver++(2M) at 10 steps.

Every row draws ``--num`` samples from the same key with what ``jaxdiff sample`` runs (the
family's sampler at N steps; the teacher's config sampler), and reports
:func:`jaxdiff.metrics.digits.sample_quality` (the Fréchet distance to the test split in the
classifier's features; the share of the most and the least frequent class); the wall time is
that of the second call (compiled), on this machine. The straightness (Liu et al. 2023) of
the teacher's flow and of the 2-rectified flow, both on the linear path, is reported beside.

Writes ``fewstep_digits.md``, ``fewstep_digits.csv``, ``fewstep_digits.json`` and
``fewstep_digits.png`` (FD against evaluations) into ``--out``. ``figures/fewstep_digits.*``
holds the runs at the budgets they were started with (consistency training 4,000 steps,
distillation 2,000, MeanFlow 2,000, reflow 1,500 with distillation from 1,000);
``figures/fewstep_digits_3000/`` MeanFlow and reflow continued to their configs' 3,000 steps
(``jaxdiff train --workdir W --config.training.num_steps=3000``).

Usage::

    nice -n 10 python experiments/fewstep_digits.py --teacher runs/digits_edm \\
        --consistency runs/digits_consistency --distillation runs/digits_cd \\
        --meanflow runs/digits_meanflow --reflow runs/digits_reflow [--num 500]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from jaxdiff import data, fewstep, processes, samplers, train
from jaxdiff.families.fewstep import _network, teacher_denoiser
from jaxdiff.metrics import digits

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STUDENTS = {
    "consistency": "consistency training",
    "distillation": "consistency distillation",
    "meanflow": "MeanFlow",
    "reflow": "reflow + distillation",
}


def _timed(fn, *args):
    """``(result, seconds)`` of the second call (the first compiles)."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args))
    return result, time.perf_counter() - start


def _row(name, nfe, samples, seconds, params, reference):
    quality = digits.sample_quality(data.to_uint8(np.asarray(samples)), params=params, reference=reference)
    shares = quality["histogram"]
    return dict(method=name, nfe=nfe, fd=round(quality["fd"], 3), max_share=round(max(shares), 3),
                min_share=round(min(shares), 3), seconds=round(seconds, 3))


def _teacher_rows(run, num, key, params, reference):
    rows = []
    heun = jax.jit(lambda state, k: run.family.sample(state, k, num))
    x, seconds = _timed(heun, run.state, key)
    steps = run.config.sampling.num_steps
    rows.append(_row(f"teacher: EDM Heun, {steps} steps", 2 * steps - 1, x, seconds, params, reference))
    denoise, (sigma_min, sigma_max) = teacher_denoiser(run)
    process = processes.EDM(sigma_min=sigma_min, sigma_max=sigma_max)

    def dpm(state, k):
        model_fn = lambda x, sigma: denoise(x, sigma, {"params": state.ema_params})  # noqa: E731
        x_T = sigma_max * jax.random.normal(k, (num, *run.family.data_shape))
        return samplers.dpm_solver_sample(model_fn, process, x_T, num_steps=10, prediction="x0")

    x, seconds = _timed(jax.jit(dpm), run.state, key)
    rows.append(_row("teacher: DPM-Solver++(2M), 10 steps", 10, x, seconds, params, reference))
    return rows


def _linear_velocity(denoise, variables):
    """An EDM-form denoiser as the velocity of the linear path x_t = (1 - t) x_0 + t eps:
    v = (x - x_0-hat) / t, x_0-hat = D(x / (1 - t); t / (1 - t))."""

    def velocity(x, t):
        t_b = t.reshape((-1,) + (1,) * (x.ndim - 1))
        return (x - denoise(x / (1 - t_b), t / (1 - t), variables)) / t_b

    return velocity


def _straightness(teacher, reflow_run, num, key):
    """S of the teacher's flow and of the 2-rectified flow, from the same noise."""
    denoise, _ = teacher_denoiser(teacher)
    noise = jax.random.normal(key, (num, *teacher.family.data_shape)) * (1 - 1e-3)
    teacher_v = _linear_velocity(denoise, {"params": teacher.state.ema_params})
    cfg = reflow_run.config
    network = _network(cfg, reflow_run.family.data_shape, extra_input=False)
    scale = cfg.reflow.time_scale
    params = {"params": reflow_run.state.ema_params}
    reflow_v = lambda x, t: network.apply(params, x, scale * t)  # noqa: E731
    # the teacher's field is singular at both ends (alpha = 0 at t = 1, 1 / t at t = 0)
    s_teacher = fewstep.straightness(lambda x, t: teacher_v(x, jnp.clip(t, 1e-3, 0.999)), noise, num_steps=32)
    s_reflow = fewstep.straightness(reflow_v, noise, num_steps=32)
    return dict(teacher=float(jnp.mean(s_teacher)), reflow=float(jnp.mean(s_reflow)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="a trained digits_edm run")
    for name in STUDENTS:
        parser.add_argument(f"--{name}", default=None, help=f"a trained {STUDENTS[name]} run")
    parser.add_argument("--num", type=int, default=500, help="samples per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/figures")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(args.seed)
    params = digits.load_classifier()
    reference = digits.reference_statistics(params)
    teacher = train.load_run(args.teacher)
    rows = _teacher_rows(teacher, args.num, key, params, reference)
    runs = {}
    for name, title in STUDENTS.items():
        workdir = getattr(args, name)
        if workdir is None:
            continue
        runs[name] = run = train.load_run(workdir)
        for steps in (1, 2, 4):
            sample = jax.jit(lambda state, k, s=steps: run.family.sample(state, k, args.num, num_steps=s))
            x, seconds = _timed(sample, run.state, key)
            rows.append(_row(f"{title} (step {run.step})", steps, x, seconds, params, reference))
        print(rows[-3:], flush=True)
    result = dict(rows=rows, num=args.num, teacher_step=int(teacher.step))
    if "reflow" in runs:
        result["straightness"] = _straightness(teacher, runs["reflow"], args.num, key)
    _write(out, result)


def _meeting(rows, nfe, bound) -> str:
    """The students whose row at ``nfe`` evaluations has FD <= ``bound``, or "none"."""
    names = [r["method"] for r in rows[2:] if r["nfe"] == nfe and r["fd"] <= bound]
    return ", ".join(names) or "none"


def _write(out: Path, result: dict) -> None:
    rows = result["rows"]
    with open(out / "fewstep_digits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "fewstep_digits.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| method | NFE | digits FD | largest class share | smallest class share | wall s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['nfe']} | {r['fd']} | {r['max_share']} | {r['min_share']} | "
              f"{r['seconds']} |" for r in rows]
    teacher_fd = rows[0]["fd"]
    lines.append(f"\nAims: 1 NFE within 1.5x the teacher's {teacher_fd} (<= {1.5 * teacher_fd:.2f}), "
                 f"2 NFE level with it (<= {teacher_fd}). Met at 1 NFE by: "
                 f"{_meeting(rows, 1, 1.5 * teacher_fd)}; at 2 NFE by: {_meeting(rows, 2, teacher_fd)}.")
    if "straightness" in result:
        s = result["straightness"]
        lines.append(f"\nStraightness S (Liu et al. 2023, linear path, per dimension): teacher "
                     f"{s['teacher']:.4f}, 2-rectified flow {s['reflow']:.4f}.")
    (out / "fewstep_digits.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for title in STUDENTS.values():
        points = [(r["nfe"], r["fd"]) for r in rows if r["method"].startswith(title)]
        if points:
            ax.plot(*zip(*points), "o-", label=title)
    for r, style in zip(rows[:2], ("--", ":")):
        ax.axhline(r["fd"], color="k", linestyle=style, label=f"{r['method']} ({r['nfe']} NFE)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4], ["1", "2", "4"])
    ax.set_xlabel("network evaluations")
    ax.set_ylabel("digits Fréchet distance (lower is better)")
    ax.set_title(f"few-step digits, {result['num']} samples per point")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fewstep_digits.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
