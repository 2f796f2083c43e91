"""The generative trilemma measured on the 8x8 digits: quality, diversity and speed (and
likelihood where defined) of diffusion (DDPM with its 1000-step ancestral sampler and with
DPM-Solver++(2M) in 10 steps), a VAE and a GAN, each trained by ``jaxdiff train`` on the same
data for a comparable wall time (``configs/digits_ddpm.py``, ``digits_vae.py``,
``digits_gan.py``, 3,000 steps of 64 images each).

* quality: the digits Fréchet distance (vs the test split) and the classifier's mean top
  probability (:mod:`jaxdiff.metrics.digits`);
* diversity: the entropy of the class histogram (bits; log2 10 = 3.32 is balanced), precision
  and recall in the classifier's features (Kynkäänniemi et al. 2019, k = 3, 359 samples
  against the 359 test digits), and the share of near-copies: samples closer (in pixels) to
  a training digit than 95 % of test digits are to theirs (5 % for held-out data);
* speed: samples per second at batch 256 (median of the timed batches after the first),
  network evaluations per sample, training wall and CPU time;
* likelihood: bits/dim on the test split (the diffusion bound; the VAE's -ELBO and IWAE with
  k = 1000).

    python experiments/trilemma.py [--runs runs] [--num 1024]

trains any missing run into ``RUNS/digits_{ddpm,vae,gan}`` (a rerun reuses them), and writes
``experiments/figures/trilemma.{csv,md,json}``, ``trilemma_samples.png`` (grids side by side)
and ``trilemma_tradeoff.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxdiff import cli, data, evaluate, train  # noqa: E402
from jaxdiff.metrics import digits, diversity  # noqa: E402
from _timing import timed_train  # noqa: E402

BATCH = 256
COLUMNS = ["model", "fd", "confidence", "class_entropy_bits", "precision", "recall", "near_copies",
           "samples_per_s", "nfe", "train_s", "train_cpu_s", "bpd", "iwae_bpd"]


def _time_batches(fn, arg, num, rng):
    """Samples ``num`` in batches of 256 with ``fn(arg, key)``; returns (uint8 samples, the
    median seconds per batch over all batches but the first, which compiles)."""
    out, seconds = [], []
    for i in range(math.ceil(num / BATCH)):
        start = time.perf_counter()
        x = jax.block_until_ready(fn(arg, jax.random.fold_in(rng, i)))
        seconds.append(time.perf_counter() - start)
        out.append(data.to_uint8(np.asarray(x)))
    return np.concatenate(out)[:num], float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def diffusion_samplers(run):
    """(name, nfe, jitted ``fn(variables, key) -> [256, ...]``) for DDPM-1000 and DPM-Solver-10."""
    for name, nfe, overrides in (
        ("DDPM, 1000 steps", run.config.diffusion.num_timesteps, dict(sampler="ddpm")),
        ("DDPM + DPM-Solver++(2M), 10 steps", 10, dict(sampler="dpm_solver", num_steps=10, order=2)),
    ):
        sample = train.build_sampler(run.config, run.experiment, **overrides)
        yield name, nfe, jax.jit(lambda v, key, sample=sample: sample(v, key, BATCH))


class Reference:
    """What every row is measured against: the classifier, the test digits' statistics and
    features, the training digits, and the near-copy threshold."""

    def __init__(self, num_pr: int):
        self.params = digits.load_classifier()
        self.test = digits.digits_split("test")[0]
        self.train = digits.digits_split("train")[0]
        self.stats = digits.reference_statistics(self.params)
        self.num_pr = min(num_pr, len(self.test))
        self.test_features = digits.classify(self.params, self.test[: self.num_pr])["features"]
        nn = diversity.nearest_neighbour_distances(_pixels(self.test), _pixels(self.train))
        self.copy_threshold = float(np.quantile(nn, 0.05))

    def measure(self, samples, pr_samples=None) -> dict:
        quality = digits.sample_quality(samples, params=self.params, reference=self.stats)
        pr_samples = samples[: self.num_pr] if pr_samples is None else pr_samples
        fake = digits.classify(self.params, pr_samples)["features"]
        precision, recall = diversity.precision_recall(self.test_features, fake, k=3)
        return dict(
            fd=quality["fd"],
            confidence=quality["confidence"],
            class_entropy_bits=diversity.histogram_entropy(quality["histogram"]),
            precision=precision,
            recall=recall,
        )

    def near_copies(self, samples) -> float:
        return diversity.near_copy_share(
            _pixels(samples), _pixels(self.train), threshold=self.copy_threshold
        )


def _pixels(images) -> np.ndarray:
    return np.asarray(images, np.float64).reshape(len(images), -1) / 255.0


def _train_time(timing: dict) -> dict:
    return {"train_s": timing["seconds"], "train_cpu_s": timing["cpu_seconds"]}


def train_runs(runs: Path) -> dict:
    seconds = {}
    for family in ("ddpm", "vae", "gan"):
        config = cli.load_config_file(f"digits_{family}")
        seconds[family] = timed_train(config, runs / f"digits_{family}", log=print)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="holds digits_{ddpm,vae,gan}; missing runs are trained")
    parser.add_argument("--num", type=int, default=1024, help="samples per model")
    parser.add_argument("--iwae_samples", type=int, default=1000)
    parser.add_argument("--out", default="experiments/figures")
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_seconds = train_runs(runs)
    ref = Reference(num_pr=359)
    rng = jax.random.PRNGKey(0)
    sample_key, nll_key = jax.random.split(rng)
    rows, grids = [], {}

    # the data themselves, for scale: 1,024 training digits (FD, P/R on 359 of them against the
    # test digits), and the test digits' own near-copy share (5 % by construction)
    real = ref.train[np.random.default_rng(0).permutation(len(ref.train))[: args.num]]
    rows.append(dict(model="real digits", **ref.measure(real), near_copies=ref.near_copies(ref.test)))
    grids["real digits"] = real[:64]

    ddpm = train.load_run(runs / "digits_ddpm")
    bound = evaluate.evaluate_nll(
        ddpm.model_fn, ddpm.schedule, ref.test, nll_key,
        variance=ddpm.config.diffusion.variance, prediction=ddpm.config.diffusion.prediction,
    )
    print(f"DDPM bound {bound['total_bpd']:.3f} bits/dim", flush=True)
    for name, nfe, fn in diffusion_samplers(ddpm):
        samples, per_batch = _time_batches(fn, ddpm.variables, args.num, sample_key)
        rows.append(dict(model=name, **ref.measure(samples), near_copies=ref.near_copies(samples),
                         samples_per_s=BATCH / per_batch, nfe=nfe, **_train_time(train_seconds["ddpm"]),
                         bpd=bound["total_bpd"]))
        grids[name] = samples[:64]
        print(json.dumps(rows[-1]), flush=True)

    vae_run = train.load_run(runs / "digits_vae")
    vae_bound = evaluate.evaluate_estimate(
        vae_run.family.bound(iwae_samples=args.iwae_samples), vae_run.state, ref.test, nll_key,
        batch_size=len(ref.test),
    )
    for name, run, extra in (
        ("VAE", vae_run, dict(bpd=vae_bound["total_bpd"], iwae_bpd=vae_bound["iwae_bpd"])),
        ("GAN", train.load_run(runs / "digits_gan"), {}),
    ):
        fn = jax.jit(lambda state, key, run=run: run.family.sample(state, key, BATCH))
        samples, per_batch = _time_batches(fn, run.state, args.num, sample_key)
        family = run.config.family
        rows.append(dict(model=name, **ref.measure(samples), near_copies=ref.near_copies(samples),
                         samples_per_s=BATCH / per_batch, nfe=1, **_train_time(train_seconds[family]), **extra))
        grids[name] = samples[:64]
        print(json.dumps(rows[-1]), flush=True)

    write_table(rows, out)
    plot_grids(grids, out / "trilemma_samples.png")
    plot_tradeoff(rows, out / "trilemma_tradeoff.png")
    print(f"wrote {out}/trilemma.{{csv,md,json}}, trilemma_samples.png, trilemma_tradeoff.png")


def _cell(value, fmt):
    return "" if value is None else format(value, fmt)


def _train_cell(row) -> str:
    if row.get("train_s") is None:
        return ""
    return f"{row['train_s']:.0f} ({row['train_cpu_s']:.0f})"


def write_table(rows, out: Path) -> None:
    with open(out / "trilemma.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([{k: r.get(k) for k in COLUMNS} for r in rows])
    (out / "trilemma.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "| model | digits FD ↓ | confidence ↑ | class entropy (bits) ↑ | precision ↑ | recall ↑ | "
        "near-copies | samples/s ↑ | NFE ↓ | train s (CPU s) | bits/dim ↓ |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bpd = _cell(r.get("bpd"), ".3f")
        if r.get("iwae_bpd") is not None:
            bpd += f" (IWAE {r['iwae_bpd']:.3f})"
        lines.append(
            f"| {r['model']} | {r['fd']:.1f} | {r['confidence']:.3f} | {r['class_entropy_bits']:.3f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['near_copies']:.3f} | "
            f"{_cell(r.get('samples_per_s'), '.0f')} | {_cell(r.get('nfe'), 'd')} | "
            f"{_train_cell(r)} | {bpd} |"
        )
    table = "\n".join(lines) + "\n"
    (out / "trilemma.md").write_text(table)
    print(table)


def plot_grids(grids: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 3.4))
    for ax, (name, images) in zip(axes, grids.items()):
        ax.imshow(data.image_grid(images, ncols=8)[..., 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title(name.replace(", ", ",\n").replace(" + ", " +\n"), fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_tradeoff(rows, path: Path) -> None:
    models = [r for r in rows if r.get("samples_per_s")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in models:
        left.scatter(r["samples_per_s"], r["fd"], s=40)
        left.annotate(r["model"], (r["samples_per_s"], r["fd"]), fontsize=8, xytext=(4, 4),
                      textcoords="offset points")
        right.scatter(r["precision"], r["recall"], s=40)
        right.annotate(r["model"], (r["precision"], r["recall"]), fontsize=8, xytext=(4, 4),
                       textcoords="offset points")
    real = rows[0]
    left.axhline(real["fd"], color="grey", ls="--", lw=0.8, label="real digits")
    right.scatter([real["precision"]], [real["recall"]], marker="*", s=120, color="grey", label="real digits")
    left.set(xscale="log", xlabel="samples / s at batch 256 (CPU)", ylabel="digits Fréchet distance",
             title="quality vs speed")
    right.set(xlabel="precision (quality)", ylabel="recall (diversity)", title="quality vs diversity",
              xlim=(0, 1.05), ylim=(0, 1.05))
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
