"""Diversity of samples: precision and recall in a feature space (Kynkäänniemi et al. 2019),
near-copies of the training set, the entropy of a class histogram, and the mode statistics of
a 2-D mixture (modes covered, high-quality share, KL to the uniform mode histogram), and the
energy distance between two sample sets.

All functions take host arrays and return Python floats or numpy arrays; distances are
Euclidean, computed in float64 in blocks so that thousands of points fit in memory.

Example::

    p, r = precision_recall(real_features, sample_features, k=3)
    share = near_copy_share(samples, train, threshold=np.quantile(nn_test_to_train, 0.05))
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pairwise_distances",
    "nearest_neighbour_distances",
    "knn_radii",
    "precision_recall",
    "near_copy_share",
    "histogram_entropy",
    "mode_statistics",
    "energy_distance",
]


def pairwise_distances(a, b) -> np.ndarray:
    """``[N, M]`` Euclidean distances between the rows of ``a`` [N, ...] and ``b`` [M, ...]."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def nearest_neighbour_distances(x, reference) -> np.ndarray:
    """``[N]`` distance of each row of ``x`` to its nearest row of ``reference``."""
    return knn_radii(x, k=1, reference=reference)


def knn_radii(x, *, k: int, reference=None, block: int = 1024) -> np.ndarray:
    """``[N]`` distance of each row of ``x`` to its k-th nearest row of ``reference``; with
    ``reference`` None, of ``x`` itself, the point excluded (the radius of Kynkäänniemi et
    al. 2019, eq. 1)."""
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    self_ref = reference is None
    reference = x if self_ref else reference
    out = []
    for start in range(0, len(x), block):
        d = pairwise_distances(x[start : start + block], reference)
        if self_ref:
            rows = np.arange(d.shape[0])
            d[rows, start + rows] = np.inf
        out.append(np.partition(d, k - 1, axis=1)[:, k - 1])
    return np.concatenate(out)


def _share_inside(points, centres, radii, block: int = 1024) -> float:
    """Fraction of ``points`` inside at least one ball (centre, radius)."""
    inside = [
        np.any(pairwise_distances(points[s : s + block], centres) <= radii[None, :], axis=1)
        for s in range(0, len(points), block)
    ]
    return float(np.mean(np.concatenate(inside)))


def precision_recall(real, fake, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of Kynkäänniemi et al. (2019), eq. 1-2: each set's
    manifold is the union of balls around its points with the radius of the k-th nearest
    neighbour;

    .. math:: \\mathrm{precision} = \\frac1M \\sum_j f(\\phi_g^j, \\Phi_r), \\quad
        \\mathrm{recall} = \\frac1N \\sum_i f(\\phi_r^i, \\Phi_g)

    with f(phi, Phi) = 1 when phi lies in the manifold of Phi. Precision is the share of
    samples that look real (quality); recall the share of real data the samples cover
    (diversity).

    Args:
      real: ``[N, D]`` features of real data; fake: ``[M, D]`` features of samples.
      k: the neighbour that sets the radii (3 in the paper).
    """
    real = np.asarray(real, np.float64).reshape(len(real), -1)
    fake = np.asarray(fake, np.float64).reshape(len(fake), -1)
    precision = _share_inside(fake, real, knn_radii(real, k=k))
    recall = _share_inside(real, fake, knn_radii(fake, k=k))
    return precision, recall


def near_copy_share(samples, train, *, threshold: float) -> float:
    """Share of samples whose nearest training example is closer than ``threshold`` (e.g. a
    low quantile of held-out data's distances to the training set: held-out data then have
    that share by construction, a model that memorises has nearly 1)."""
    return float(np.mean(nearest_neighbour_distances(samples, train) < threshold))


def histogram_entropy(histogram) -> float:
    """Entropy in bits of a histogram (normalised here): log2 K for K equal classes, 0 for
    one."""
    p = np.asarray(histogram, np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def mode_statistics(samples, centres, *, std: float, min_share: float = 0.1) -> dict:
    """How a 2-D sample set covers a mixture of isotropic Gaussians of equal weight.

    Each sample is assigned to its nearest centre; it is *high quality* when within 3 ``std``
    of it. A mode is *covered* when it holds at least ``min_share`` of its expected count of
    high-quality samples (N / K). The KL divergence of the histogram of high-quality samples
    over the modes from the uniform one, sum_k p_k log(K p_k) in nats, is 0 for perfect
    balance and log K when all fall on one mode; NaN when no sample is of high quality.

    Args:
      samples: ``[N, 2]``; centres: ``[K, 2]``; std: the components' standard deviation.

    Returns:
      dict: ``modes_covered`` (int), ``num_modes``, ``high_quality`` (share), ``kl_uniform``.
    """
    samples, centres = np.asarray(samples, np.float64), np.asarray(centres, np.float64)
    d = pairwise_distances(samples, centres)
    nearest = np.argmin(d, axis=1)
    good = d[np.arange(len(samples)), nearest] <= 3.0 * std
    counts = np.bincount(nearest[good], minlength=len(centres))
    num_modes = len(centres)
    p = counts[counts > 0] / max(counts.sum(), 1)
    return dict(
        modes_covered=int(np.sum(counts >= min_share * len(samples) / num_modes)),
        num_modes=num_modes,
        high_quality=float(good.mean()),
        kl_uniform=float(np.sum(p * np.log(num_modes * p))) if p.size else float("nan"),
    )


def energy_distance(x, y) -> float:
    """The energy distance between the distributions of two sample sets (Szekely & Rizzo 2013,
    eq. 2.1), unbiased (a U-statistic within each set):

    .. math:: E = 2\\, \\mathbb{E}\\|X - Y\\| - \\mathbb{E}\\|X - X'\\| - \\mathbb{E}\\|Y - Y'\\|

    0 in expectation exactly when the distributions are equal, positive otherwise.

    Args:
      x: ``[N, ...]``; y: ``[M, ...]`` (N, M >= 2).
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"energy_distance needs at least 2 points in each set, got {n} and {m}")
    within = lambda a, k: pairwise_distances(a, a).sum() / (k * (k - 1))  # noqa: E731
    return float(2.0 * pairwise_distances(x, y).mean() - within(x, n) - within(y, m))
