"""How well a predicted uncertainty tracks the actual error (committees and the like).

Per atom, the force error ``|F_pred - F_ref|`` (eV/Å) is set against the predicted
force spread ``sigma`` (eV/Å, a committee's `forces_uncertainty`):

- Spearman rank correlation: does a larger spread mean a larger error?
- miscalibration area: for each confidence level p, the fraction of force components
  within the Gaussian interval ``± z_p sigma / sqrt(3)`` against p; the area between
  that curve and the diagonal (0: perfectly calibrated, 0.5: worst) (Tran et al., Mach.
  Learn.: Sci. Technol. 1, 025006 (2020));
- ratio of RMS error to RMS spread (1 when calibrated as `calibrate_committee` does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["calibration_metrics", "interval_coverage", "plot_calibration"]


def interval_coverage(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coverage of Gaussian intervals by errors ``z`` in units of their predicted sigma.

    Args:
        z: ``|error| / sigma`` of each scalar error (any shape).

    Returns:
        ``(levels, observed, area)``: 50 confidence levels p in [0.01, 0.99], the
        fraction of ``z`` inside the interval ``± z_p`` of each, and the miscalibration
        area between the two (0: calibrated, 0.5: worst).
    """
    from scipy.special import erfinv

    z = np.asarray(z, dtype=float)
    levels = np.linspace(0.01, 0.99, 50)
    observed = np.array([(z <= np.sqrt(2.0) * erfinv(p)).mean() for p in levels])
    return levels, observed, float(np.trapezoid(np.abs(observed - levels), levels))


def calibration_metrics(error: np.ndarray, sigma: np.ndarray) -> dict[str, Any]:
    """Calibration of per-atom force uncertainties.

    Args:
        error: ``(n_atoms, 3)`` force errors (predicted minus reference), eV/Å.
        sigma: ``(n_atoms,)`` predicted force spread (norm over components), eV/Å.

    Returns:
        ``spearman`` (of |error| and sigma per atom), ``miscalibration_area``,
        ``rms_error_over_rms_sigma``, ``n_atoms``; and the curve ``expected`` /
        ``observed`` (fractions of force components inside the interval).
    """
    from scipy.stats import spearmanr

    error = np.asarray(error, dtype=float).reshape(-1, 3)
    sigma = np.asarray(sigma, dtype=float).ravel()
    keep = np.isfinite(error).all(1) & np.isfinite(sigma) & (sigma > 0)
    error, sigma = error[keep], sigma[keep]
    if len(sigma) < 3:
        return {"n_atoms": int(len(sigma))}
    norm = np.linalg.norm(error, axis=1)
    # per component, in sigma units
    levels, observed, area = interval_coverage(np.abs(error) / (sigma[:, None] / np.sqrt(3.0)))
    return {"n_atoms": int(len(sigma)),
            "spearman": float(spearmanr(norm, sigma).statistic),
            "miscalibration_area": area,
            "rms_error_over_rms_sigma": float(np.sqrt((norm**2).mean() / (sigma**2).mean())),
            "expected": levels.tolist(), "observed": observed.tolist()}


def plot_calibration(error: np.ndarray, sigma: np.ndarray, metrics: dict[str, Any],
                     path: str | os.PathLike, title: str = "") -> Path:
    """Error against predicted spread (log-log) and the calibration curve, as a PNG."""
    from nnip.validate.errors import _figure

    error = np.asarray(error, dtype=float).reshape(-1, 3)
    sigma = np.asarray(sigma, dtype=float).ravel()
    norm = np.linalg.norm(error, axis=1) * 1e3
    fig, (left, right) = _figure(2)
    left.loglog(sigma * 1e3, norm, ".", ms=2, alpha=0.4)
    lo = max(min(sigma.min() * 1e3, norm[norm > 0].min()), 1e-3)
    hi = max(sigma.max(), norm.max() / 1e3) * 1e3
    left.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="error = spread")
    left.set(xlabel="predicted force spread (meV/Å)", ylabel="|force error| (meV/Å)",
             title=f"{title} Spearman {metrics.get('spearman', float('nan')):.2f}")
    left.legend(fontsize=8)
    if "expected" in metrics:
        right.plot(metrics["expected"], metrics["observed"], label="model")
        right.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
        right.fill_between(metrics["expected"], metrics["expected"], metrics["observed"],
                           alpha=0.2)
    right.set(xlabel="expected fraction inside", ylabel="observed fraction inside",
              title=f"miscalibration area {metrics.get('miscalibration_area', float('nan')):.3f}")
    right.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
