"""The seeds' manifold argument, measured: for each test digit a, a copy b with part of it
erased and a copy c shifted by a few pixels. Which of b and c is "closer" to a, by pixel MSE,
by distance in the VAE's latent space (posterior means) and by distance in the digits
classifier's features?

b erases the 3x3 patch of a that holds the most ink; c shifts a right by ``s`` pixels (zero
fill), s = 1 and 2 (of 8). The seeds' claim: pixel MSE ranks c farther than b, although c is
semantically the same digit -- the reason to learn a latent space. The classifier's
predictions on b and c say which copy kept the digit's identity.

    python experiments/manifold.py [--vae runs/digits_vae]

needs a trained VAE (``jaxdiff train --config configs/digits_vae.py``) and writes
``experiments/figures/manifold.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxdiff import data, train  # noqa: E402
from jaxdiff.families.generative import vae_model  # noqa: E402
from jaxdiff.metrics import digits  # noqa: E402

PATCH = 3


def erase_inkiest_patch(images: np.ndarray) -> np.ndarray:
    """Each image with its PATCH x PATCH window of largest total intensity set to 0."""
    out = images.copy()
    h, w = images.shape[1:3]
    for n, img in enumerate(images[..., 0].astype(np.int64)):
        sums = [(img[i : i + PATCH, j : j + PATCH].sum(), i, j)
                for i in range(h - PATCH + 1) for j in range(w - PATCH + 1)]
        _, i, j = max(sums)
        out[n, i : i + PATCH, j : j + PATCH] = 0
    return out


def shift_right(images: np.ndarray, s: int) -> np.ndarray:
    """Each image moved ``s`` pixels to the right; the vacated columns are 0 (background)."""
    out = np.zeros_like(images)
    out[:, :, s:] = images[:, :, :-s]
    return out


def distances(a, b, *, embed) -> np.ndarray:
    """``[N]`` Euclidean distances between the embeddings of paired images."""
    return np.linalg.norm(embed(a) - embed(b), axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", default="runs/digits_vae")
    parser.add_argument("--out", default="experiments/figures")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    images, labels = digits.digits_split("test")
    run = train.load_run(args.vae)
    network = vae_model(run.config, images.shape[1:])
    encode = jax.jit(lambda p, x: network.module(p).encode(data.to_model_range(x))[0])
    params = digits.load_classifier()
    spaces = {
        "pixel MSE": lambda x: np.asarray(x, np.float64).reshape(len(x), -1) / 255.0,
        "VAE latent (posterior mean)": lambda x: np.asarray(encode(run.variables["params"], x)),
        "classifier features": lambda x: np.asarray(digits.classify(params, x)["features"]),
    }
    erased = erase_inkiest_patch(images)
    accuracy = lambda x: float(np.mean(np.argmax(digits.classify(params, x)["probs"], 1) == labels))  # noqa: E731
    results = {"num_digits": int(len(images)), "patch": PATCH,
               "classifier_accuracy": {"a": accuracy(images), "b (erased)": accuracy(erased)}, "shifts": {}}
    for s in (1, 2):
        shifted = shift_right(images, s)
        results["classifier_accuracy"][f"c (shift {s})"] = accuracy(shifted)
        row = {}
        for name, embed in spaces.items():
            d_b, d_c = distances(images, erased, embed=embed), distances(images, shifted, embed=embed)
            if name == "pixel MSE":  # the mean squared error, not its root
                d_b, d_c = d_b**2 / images[0].size, d_c**2 / images[0].size
            row[name] = {"c_closer": float(np.mean(d_c < d_b)), "median_d_ab": float(np.median(d_b)),
                         "median_d_ac": float(np.median(d_c))}
        results["shifts"][s] = row
    (out / "manifold.json").write_text(json.dumps(results, indent=2) + "\n")

    lines = ["| distance | shift | share of digits where c (shifted) is closer than b (erased) | "
             "median d(a, b) | median d(a, c) |", "|---|---|---|---|---|"]
    for s, row in results["shifts"].items():
        for name, r in row.items():
            lines.append(f"| {name} | {s} px | {r['c_closer']:.3f} | {r['median_d_ab']:.3g} | "
                         f"{r['median_d_ac']:.3g} |")
    acc = ", ".join(f"{k} {v:.3f}" for k, v in results["classifier_accuracy"].items())
    table = "\n".join(lines) + f"\n\n{len(images)} test digits; classifier accuracy: {acc}\n"
    (out / "manifold.md").write_text(table)
    print(table)
    plot(images, erased, shift_right(images, 1), spaces, out / "manifold.png", results)
    print(f"wrote {out}/manifold.{{md,json,png}}")


def plot(images, erased, shifted, spaces, path, results, num: int = 6) -> None:
    idx = np.linspace(0, len(images) - 1, num).astype(int)
    fig, axes = plt.subplots(num, 4, figsize=(8.4, 1.9 * num),
                             gridspec_kw=dict(width_ratios=[1, 1, 1, 2.6]))
    for row, i in enumerate(idx):
        triplet = (images[i : i + 1], erased[i : i + 1], shifted[i : i + 1])
        for col, (img, title) in enumerate(zip(triplet, ("a", "b: erased", "c: shifted 1 px"))):
            axes[row, col].imshow(img[0, ..., 0], cmap="gray", vmin=0, vmax=255)
            axes[row, col].axis("off")
            if row == 0:
                axes[row, col].set_title(title, fontsize=9)
        text = []
        for name, embed in spaces.items():
            d_b = distances(triplet[0], triplet[1], embed=embed)[0]
            d_c = distances(triplet[0], triplet[2], embed=embed)[0]
            if name == "pixel MSE":
                d_b, d_c = d_b**2 / images[0].size, d_c**2 / images[0].size
            text.append(f"{name}: b {d_b:.3g}, c {d_c:.3g} -> {'c' if d_c < d_b else 'b'} closer")
        axes[row, 3].text(0, 0.5, "\n".join(text), fontsize=7.5, va="center")
        axes[row, 3].axis("off")
    shares = ", ".join(f"{k.split(' (')[0]} {v['c_closer']:.0%}" for k, v in results["shifts"][1].items())
    fig.suptitle(f"c closer than b (1 px shift, all {results['num_digits']} test digits): {shares}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
