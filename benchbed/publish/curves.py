"""How far each run's training went, read from the held-out losses its record keeps: the block
under a table with ``learning_curves: true`` (NOTE, printed under it, says what its columns mean).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

MIN_EPOCHS = 5  # fewer points than this do not pin three parameters down
_C_GRID = np.round(np.arange(0.05, 3.0001, 0.01), 2)


def fitted_floor(losses: list[float]) -> float | None:
    """a of the best power law L(e) ~= a + b * e^(-c) (b >= 0, c > 0) through L_1 .. L_E (``losses``
    without L_0), least squares over a grid of c; None when there are too few epochs, the curve rises,
    or it has not bent yet. A power law levels off more slowly than an exponential: its floor is the
    more generous extrapolation."""
    y = np.asarray(losses, dtype=float)
    if y.size < MIN_EPOCHS or not np.isfinite(y).all():
        return None
    e = np.arange(1, y.size + 1, dtype=float)
    best: tuple[float, float] | None = None
    for c in _C_GRID:
        x = e ** -c
        design = np.stack([np.ones_like(x), x], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        if b < 0:  # a rising curve has no floor to read
            continue
        sse = float(((design @ np.array([a, b]) - y) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, float(a))
    if best is None or y[0] - y[-1] < y[-1] - best[1]:
        return None
    return best[1]


def _mean_sd(values: list[float], digits: int = 1) -> str:
    if not values:
        return "—"
    text = f"{statistics.fmean(values):.{digits}f}"
    return text + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def curve_row(group: list[dict[str, Any]]) -> list[str] | None:
    """[epochs, stop, epoch 1, stop, fall/epoch, floor] over a row's runs; None without history."""
    runs = [r for r in group if isinstance(r.get("convergence"), dict)
            and r["convergence"].get("heldout_losses")]
    if not runs:
        return None
    histories = [r["convergence"]["heldout_losses"][1:] for r in runs]  # L_0: the untrained model
    epochs = sorted({len(h) for h in histories})
    converged = sum(bool(r["convergence"].get("converged")) for r in runs)
    # a record with held-out losses was trained with a convergence check, so its config has one
    patience = [int(r["config"]["training"]["converge"]["patience"]) for r in runs]
    falls = [(h[-1 - p] - h[-1]) / p for h, p in zip(histories, patience) if len(h) > p]
    floors = [f for f in (fitted_floor(h) for h in histories) if f is not None]
    unread = len(runs) - len(floors)
    floor = (_mean_sd(floors) + (f" ({unread} of {len(runs)} still falling)" if floors and unread else "")
             if floors else "still falling")
    return [f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}",
            f"{converged}/{len(runs)}",
            _mean_sd([h[0] for h in histories]), _mean_sd([h[-1] for h in histories]),
            _mean_sd(falls, 2),
            floor]


HEADER = ["epochs", "converged", "held-out after epoch 1", "at the stop",
          "fall per epoch (last patience epochs)", "fitted floor a"]

NOTE = ("Held-out objective (nats, mean ± std over seeds) on the training examples set aside for "
        "the convergence check. The fitted floor is a of the power law L(e) ≈ a + b·e^(−c) in the "
        "epoch e, least-squares fitted to each run's epochs: an extrapolation of this model and "
        "schedule, not a bound; 'still falling' "
        "when the fit puts more of the fall ahead of a run than behind it. A negative fall is a rise "
        "(held-out loss going up: the stop came after the best epoch). The ELBO's held-out "
        "objective is −ELBO, which lies above its NLL by the importance-sampling gap.")
