"""``disentanglement_figures``: latent traversals and the factor x latent MI heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from benchbed import hookimpl
from benchbed.components import MetricResult
from benchbed_plugins.metrics.disentanglement.mig import mig
from benchbed_plugins.metrics.disentanglement.factors import FactorScore, code_pool
from benchbed_plugins.metrics.figures import new_figure, save_grid
from matplotlib.image import imread as plt_imread

FigureKind = Literal["traversals", "mi_heatmap"]


def traversal_codes(anchor: np.ndarray, low: np.ndarray, high: np.ndarray, steps: int) -> torch.Tensor:
    """(D * steps, D): row d of the grid moves latent d from low_d to high_d, the others at ``anchor``."""
    dim = len(anchor)
    codes = np.repeat(anchor[None, None, :], dim, 0).repeat(steps, 1)  # (D, steps, D)
    for d in range(dim):
        codes[d, :, d] = np.linspace(low[d], high[d], steps)
    return torch.from_numpy(codes.reshape(dim * steps, dim)).float()


class DisentanglementFigures(FactorScore):
    """Latent traversals and the factor x latent mutual-information heatmap of a run, as PNG files.

    * ``traversals`` (``traversals.png``): for each of ``anchors`` test
      images, one row per latent d: the decoder's mean image as z_d moves
      over ``steps`` values from the 2nd to the 98th percentile of z_d over
      the pool (the codes' own range, so AE codes and prior-matched codes
      are shown alike), the other latents held at the image's posterior
      mean (Higgins et al. 2017, Fig. 7).
    * ``mi_heatmap`` (``mi_heatmap.png``): I(z_d; v_k) / H(v_k) for every
      latent d and factor k, MIG's plug-in estimate (20 bins), one cell each
      with its value; a disentangled code shows one bright cell per column.

    Values: none; the files are listed in the result's ``figures``.
    Params: which, steps, anchors, pool, batch_size, bins.
    """

    score_name = "disentanglement_figures"

    class Params(FactorScore.Params):
        which: list[FigureKind] = Field(["traversals", "mi_heatmap"], min_length=1,
                                        description="figures to draw")
        steps: int = Field(10, ge=2, le=32, description="values per traversal row")
        anchors: int = Field(1, ge=1, le=4, description="test images traversed from")
        bins: int = Field(20, ge=2, description="bins per latent of the MI estimate")

    def produces(self) -> list[str]:
        return []

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return [f"{kind}.png" for kind in self.params.which]

    def evaluate(self, ctx) -> MetricResult:
        pool = code_pool(ctx, self.score_name, self.params.pool, self.params.batch_size)
        folder = ctx.figure_dir
        written: list[Path] = []
        if "traversals" in self.params.which:
            written.append(self.draw_traversals(ctx, pool, folder))
        if "mi_heatmap" in self.params.which:
            written.append(self.draw_heatmap(pool, folder))
        return MetricResult(values={}, figures=[str(p.relative_to(Path(ctx.run_dir))) for p in written])

    def draw_traversals(self, ctx, pool, folder: Path) -> Path:
        p = self.params
        low, high = np.percentile(pool.codes, [2, 98], axis=0)
        rows = [traversal_codes(pool.codes[a], low, high, p.steps) for a in range(min(p.anchors, len(pool.codes)))]
        model = ctx.model
        with torch.no_grad():
            images = torch.cat([model.decoder.mean(r.to(ctx.device)).cpu() for r in rows])
        return self.label_traversals(images, folder, p.steps, tuple(ctx.dataset.info().value_range),
                                     pool.codes.shape[1])

    @staticmethod
    def label_traversals(images, folder: Path, steps: int, value_range, dim: int) -> Path:
        """The grid with each row named z_d (as in the MI heatmap) and its range said once."""
        raw = save_grid(images, folder / ".traversals_grid.png", steps, value_range)
        grid = plt_imread(raw)
        raw.unlink()
        rows = len(images) // steps
        figure = new_figure(1.0 + 0.45 * steps, 0.6 + 0.45 * rows)
        ax = figure.subplots()
        ax.imshow(grid, cmap="gray")
        pitch = grid.shape[0] / rows
        ax.set_yticks([pitch * (r + 0.5) for r in range(rows)],
                      [f"z{r % dim + 1}" for r in range(rows)], fontsize=7)
        ax.set_xticks([])
        ax.set_xlabel("z_d from its 2nd to its 98th percentile over the test codes; others at one "
                      "image's posterior mean", fontsize=7)
        figure.tight_layout()
        path = folder / "traversals.png"
        figure.savefig(path)
        return path

    def draw_heatmap(self, pool, folder: Path) -> Path:
        out = mig(pool.codes, pool.classes, pool.sizes, self.params.bins)
        matrix = out["matrix"]  # (D, K) normalised MI
        names = [pool.names[k] for k in out["factors"]]
        dim = matrix.shape[0]
        figure = new_figure(1.2 + 0.9 * len(names), 1.0 + 0.4 * dim)
        ax = figure.subplots()
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for d in range(dim):
            for k in range(len(names)):
                ax.text(k, d, f"{matrix[d, k]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[d, k] < 0.6 else "black")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(dim), [f"z{d + 1}" for d in range(dim)])
        ax.set_title(f"I(z_d; v_k) / H(v_k)   MIG = {out['mig']:.3f}", fontsize="medium")
        figure.colorbar(image, ax=ax)
        figure.tight_layout()
        path = folder / "mi_heatmap.png"
        figure.savefig(path)
        return path


@hookimpl
def register_metrics(register):
    register("disentanglement_figures", DisentanglementFigures)
