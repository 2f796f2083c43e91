"""Does a diffusion model learn more than pixel-wise independent statistics? The negative
log-likelihood of the digits test split in bits/dim (of the 8-bit data) under a trained
digits DDPM -- its variational bound (Ho et al. 2020, eq. 5) with both fixed reverse
variances, split into L_T, the sum of L_{t-1} and L_0 -- beside the independent-pixel model
(every pixel its own categorical, fitted on the train split with add-one smoothing, over all
256 values or over the 17 grey levels the digits take).

The bound is evaluated twice with different noise (seeds 0 and 1) to show its Monte Carlo
error, and once on as many train digits, to show the generalisation gap.

Writes ``digits_nll.json``, ``digits_nll.csv`` and ``digits_nll.png`` into ``--out``.

Usage::

    python experiments/digits_nll.py --workdir runs/digits_ddpm [--out experiments/out]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import jax
import matplotlib
import numpy as np

from jaxdiff import data, evaluate, train
from jaxdiff.metrics import pixel_baseline

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PARTS = ("prior_bpd", "diffusion_bpd", "decoder_bpd")


def bound(run, images, seed, variance, batch_size):
    return evaluate.evaluate_nll(
        run.model_fn,
        run.schedule,
        images,
        jax.random.PRNGKey(seed),
        batch_size=batch_size,
        variance=variance,
        prediction=run.config.diffusion.prediction,
    )


def pixel_row(name, log_probs, images, split):
    bpd = np.asarray(pixel_baseline.pixel_nll_bpd(log_probs, images), np.float64)
    return dict(
        model=f"{name}, {split} split",
        split=split,
        total_bpd=float(bpd.mean()),
        stderr_bpd=float(bpd.std(ddof=1) / np.sqrt(bpd.size)),
        num_examples=int(bpd.size),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained digits DDPM run")
    parser.add_argument("--batch_size", type=int, default=359)
    parser.add_argument(
        "--max_examples", type=int, default=None, help="a quick look on fewer digits"
    )
    parser.add_argument("--out", default="experiments/out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    run = train.load_run(args.workdir)
    test = np.stack([e["x"] for e in data.digits("test")])[: args.max_examples]
    train_x = np.stack([e["x"] for e in data.digits("train")])
    levels = np.unique(train_x)
    rows = []
    for variance, seed, images, split in (
        ("fixed_large", 0, test, "test"),
        ("fixed_large", 1, test, "test"),
        ("fixed_small", 0, test, "test"),
        ("fixed_large", 0, train_x[: test.shape[0]], "train"),
    ):
        r = bound(run, images, seed, variance, min(args.batch_size, images.shape[0]))
        r.pop("terms_bpd")
        rows.append(
            dict(model=f"DDPM bound, {variance}, seed {seed}, {split} split", split=split, **r)
        )
        print(f"{rows[-1]['model']}: {r['total_bpd']:.4f} +- {r['stderr_bpd']:.4f}", flush=True)
    for name, kwargs in (
        ("independent pixels, 256 values", {}),
        (f"independent pixels, {levels.size} levels", {"levels": levels}),
    ):
        fitted = pixel_baseline.fit_pixel_categoricals(train_x, **kwargs)
        rows.append(pixel_row(name, fitted, test, "test"))
        rows.append(pixel_row(name, fitted, train_x[: test.shape[0]], "train"))

    header = ("model", "bits/dim", "stderr", "L_T", "sum L_t-1", "L_0", "N")
    table = [
        [
            r["model"],
            r["total_bpd"],
            r["stderr_bpd"],
            *[r.get(p, "") for p in PARTS],
            r["num_examples"],
        ]
        for r in rows
    ]
    print(f"digits (8x8, 8-bit), EMA model of step {run.step}")
    print(evaluate.format_table(table, header=header))
    (out / "digits_nll.json").write_text(
        json.dumps(dict(step=run.step, rows=rows), indent=2) + "\n"
    )
    with open(out / "digits_nll.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)

    shown = [r for r in rows if r["split"] == "test"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    y = np.arange(len(shown))
    left = np.zeros(len(shown))
    for part, colour in zip(PARTS, ("C2", "C0", "C1")):
        widths = np.array([r.get(part, 0.0) for r in shown])
        ax.barh(y, widths, left=left, color=colour, label=part.replace("_bpd", ""))
        left += widths
    ax.barh(
        y,
        [r["total_bpd"] if "prior_bpd" not in r else 0.0 for r in shown],
        color="gray",
        label="independent pixels",
    )
    ax.errorbar(
        [r["total_bpd"] for r in shown],
        y,
        xerr=[2 * r["stderr_bpd"] for r in shown],
        fmt="none",
        color="k",
    )
    ax.set_yticks(y, [r["model"] for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("bits/dim on the digits test split (+- 2 stderr)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "digits_nll.png", dpi=150)
    print(f"wrote {out / 'digits_nll.json'}, {out / 'digits_nll.csv'} and {out / 'digits_nll.png'}")


if __name__ == "__main__":
    main()
