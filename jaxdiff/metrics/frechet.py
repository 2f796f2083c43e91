"""The Fréchet distance between Gaussians fitted to features (the formula of FID, Heusel et al.
2017), and the feature statistics it compares, on the host in float64."""

from __future__ import annotations

import zipfile
from typing import NamedTuple

import numpy as np

__all__ = ["Statistics", "frechet_distance", "feature_statistics", "save_statistics", "load_statistics"]


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
    below zero, from rounding, are clipped)."""
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)
    (Dowson & Landau 1982; the FID of Heusel et al. 2017, Sec. 3 "FID"):

    .. math:: d^2 = \\lVert\\mu_1 - \\mu_2\\rVert^2 + \\operatorname{tr}\\left(\\Sigma_1
        + \\Sigma_2 - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\right)

    The trace of the matrix square root is computed without a non-symmetric ``sqrtm``: with
    R = Sigma_1^{1/2}, Sigma_1 Sigma_2 is similar to the symmetric PSD R Sigma_2 R, so
    tr((Sigma_1 Sigma_2)^{1/2}) = sum_i sqrt(lambda_i(R Sigma_2 R)). Two symmetric
    eigendecompositions in float64, eigenvalues clipped at zero: finite and real for singular
    covariances (fewer samples than dimensions), where ``scipy.linalg.sqrtm`` of the product
    needs an ``eps * I`` offset and returns a complex result. Runs on the host (NumPy).

    Args:
      mu1, mu2: ``[D]`` means.
      sigma1, sigma2: ``[D, D]`` covariances (symmetric positive semi-definite).

    Returns:
      The distance d^2 as a Python float (>= 0 up to rounding).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(
        np.asarray(mu2, np.float64)
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    dim = mu1.shape[0]
    for name, value, shape in (
        ("mu1", mu1, (dim,)),
        ("mu2", mu2, (dim,)),
        ("sigma1", sigma1, (dim, dim)),
        ("sigma2", sigma2, (dim, dim)),
    ):
        if value.shape != shape:
            raise ValueError(
                f"{name} must have shape {list(shape)} (mu1 is [{dim}]), got {list(value.shape)}"
            )
    sigma1 = 0.5 * (sigma1 + sigma1.T)
    sigma2 = 0.5 * (sigma2 + sigma2.T)
    root1 = _sqrt_psd(sigma1)
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sum(np.sqrt(np.clip(inner, 0.0, None)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


class Statistics(NamedTuple):
    """The Gaussian fitted to a set of features: ``mu`` [D], ``sigma`` [D, D] (float64) and
    ``num``, the number of feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int


def feature_statistics(features) -> Statistics:
    """Mean and unbiased covariance (``np.cov``, ddof = 1) of ``[N, D]`` features, in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, D], got {list(features.shape)}")
    return Statistics(features.mean(axis=0), np.cov(features, rowvar=False), features.shape[0])


def save_statistics(path, stats: Statistics, *, overwrite: bool = True) -> None:
    """Writes statistics as ``.npz`` with keys ``mu``, ``sigma`` (pytorch-fid's layout) and
    ``num``, atomically (an existing file is replaced only with ``overwrite``)."""
    from jaxdiff._io import write_file

    write_file(path, lambda f: np.savez(f, mu=stats.mu, sigma=stats.sigma, num=stats.num), overwrite=overwrite)


def load_statistics(path) -> Statistics:
    """Reads statistics written by :func:`save_statistics` (or pytorch-fid's ``.npz``).

    Raises:
      FileNotFoundError: there is no such file.
      ValueError: naming ``path``, for a file that is not an ``.npz`` of arrays, lacks ``mu``
        or ``sigma``, or whose ``mu`` [D] and ``sigma`` [D, D] disagree or are not finite.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("mu", "sigma", "num") if k in f.files}
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not an .npz of FID statistics ({e})") from e
    if "mu" not in arrays or "sigma" not in arrays:
        raise ValueError(f"{path} holds no FID statistics (expected keys 'mu' and 'sigma')")
    mu, sigma = arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)
    num = int(arrays["num"]) if arrays.get("num", np.zeros(2)).size == 1 else 0
    d = mu.shape[0] if mu.ndim == 1 else None
    if d is None or sigma.shape != (d, d):
        raise ValueError(
            f"{path}: mu {list(mu.shape)} and sigma {list(sigma.shape)} are not the mean [D] and "
            f"covariance [D, D] of one Gaussian"
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"{path}: mu or sigma holds NaN or Inf")
    return Statistics(mu, sigma, num)
