"""The forward process on one image: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at
t = 0, 100, ..., 900, 999 (Ho et al. 2020, eq. 4), one row per schedule, each panel titled with
the signal fraction sqrt(abar_t). The same eps is used at every t, so the row shows one
trajectory of the marginals fading into noise.

Writes ``forward_process.png`` and ``forward_process.csv`` (schedule, t, sqrt(abar_t),
sqrt(1 - abar_t), SNR in dB) into ``--out``.

Usage::

    python experiments/forward_process.py [--index 0] [--schedules linear cosine] [--out experiments/out]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from jaxdiff import data, schedules
from jaxdiff.diffusion import q_sample

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

T = 1000
TIMESTEPS = (*range(0, T, 100), T - 1)  # 0-based: t = 0 is the papers' x_1


def forward_row(schedule, x0, eps):
    """``[len(TIMESTEPS), H, W, C]`` x_t of one image ``x0`` [H, W, C] with shared noise."""
    t = jnp.asarray(TIMESTEPS, jnp.int32)
    batch = jnp.broadcast_to(x0, (len(TIMESTEPS), *x0.shape))
    return q_sample(schedule, batch, t, jnp.broadcast_to(eps, batch.shape))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=0, help="which digit of the test split")
    parser.add_argument("--schedules", nargs="+", default=["linear", "cosine"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x0 = data.to_model_range(data.digits("test")[args.index]["x"])
    eps = jax.random.normal(jax.random.PRNGKey(args.seed), x0.shape)
    fig, axes = plt.subplots(
        len(args.schedules),
        len(TIMESTEPS),
        figsize=(1.3 * len(TIMESTEPS), 2.0 * len(args.schedules)),
        squeeze=False,
    )
    rows = []
    for r, name in enumerate(args.schedules):
        schedule = schedules.get(name, T)
        images = np.asarray(forward_row(schedule, x0, eps))
        for c, t in enumerate(TIMESTEPS):
            abar = float(schedule.alphas_cumprod[t])
            rows.append((name, t, abar**0.5, (1 - abar) ** 0.5, 10 * np.log10(abar / (1 - abar))))
            ax = axes[r, c]
            ax.imshow(images[c, ..., 0], cmap="gray", vmin=-1.5, vmax=1.5, interpolation="nearest")
            ax.set_title(f"t={t}\n" + r"$\sqrt{\bar\alpha}$" + f"={abar**0.5:.3f}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("forward process q(x_t | x_0) on one digit (same noise at every t)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "forward_process.png", dpi=150)
    with open(out / "forward_process.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["schedule", "t", "sqrt_alpha_bar", "sqrt_one_minus_alpha_bar", "snr_db"])
        writer.writerows(rows)
    for name, t, s, n, snr in rows:
        print(f"{name:>8} t={t:4d}  sqrt(abar)={s:.4f}  sqrt(1-abar)={n:.4f}  SNR={snr:7.2f} dB")
    print(f"wrote {out / 'forward_process.png'} and {out / 'forward_process.csv'}")


if __name__ == "__main__":
    main()
