"""``figures``: the pictures a reader of InfoVAE and VIMAE expects, as PNG files."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed.errors import BenchbedError

FigureKind = Literal["samples", "markov_chain", "reconstructions", "corrupted_reconstructions",
                     "latent_scatter", "curves"]
ALL_KINDS: tuple[str, ...] = FigureKind.__args__
PADDING = 2  # pixels between tiles (torchvision's default)
X_KEYS = ("step", "epoch")  # curve columns that are axes, not series

# Salts keep each figure's random draws independent of the others'.
SALT_SAMPLES, SALT_CHAIN_DATA, SALT_CHAIN_NOISE, SALT_CORRUPT, SALT_PRIOR = 11, 12, 13, 14, 15
SALT_NOISE_START = 16


# ------------------------------------------------------------------ helpers


def to_unit_range(x: Tensor, value_range: tuple[float, float]) -> Tensor:
    lo, hi = value_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)


def save_grid(images: Tensor, path: Path, ncols: int, value_range: tuple[float, float]) -> Path:
    """Tiles in row-major order, ``ncols`` per row, ``PADDING`` pixels apart."""
    from torchvision.utils import save_image  # a well-kept grid writer
    save_image(to_unit_range(images, value_range), str(path), nrow=ncols, padding=PADDING)
    return path


def grid_size(rows: int, cols: int, height: int, width: int) -> tuple[int, int]:
    """(width, height) in pixels of a ``rows`` x ``cols`` grid of tiles."""
    return cols * (width + PADDING) + PADDING, rows * (height + PADDING) + PADDING


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@torch.no_grad()
def posterior_means(model, x: Tensor, device, batch_size: int = 500) -> Tensor:
    return torch.cat([model.encode(x[i:i + batch_size].to(device)).mean.cpu()
                      for i in range(0, len(x), batch_size)])


def project_to_plane(codes: Tensor, others: Tensor) -> tuple[Tensor, Tensor, str]:
    """2-D coordinates for a scatter: the codes themselves when D = 2, else PCA.

    The PCA (scikit-learn) is fitted on ``codes`` and applied to ``others``
    (prior samples) too, so both live in the same plane.
    """
    dim = codes.shape[1]
    if dim == 1:
        return (torch.cat([codes, torch.zeros_like(codes)], 1),
                torch.cat([others, torch.zeros_like(others)], 1), "z_1 (1-D latent)")
    if dim == 2:
        return codes, others, "z_1, z_2"
    from sklearn.decomposition import PCA
    pca = PCA(n_components=2).fit(codes.double().numpy())
    project = lambda t: torch.from_numpy(pca.transform(t.double().numpy())).float()  # noqa: E731
    return project(codes), project(others), f"first two principal components of the {dim}-D codes"


def curve_series(rows: list[dict[str, float]]) -> dict[str, tuple[list[float], list[float]]]:
    """Each logged quantity as (x, y): x is the step (or row index when absent).

    Loss terms come first, then ``probe/*`` columns; non-finite values are dropped.
    """
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in X_KEYS))
    keys.sort(key=lambda k: k.startswith("probe/"))  # stable: keeps logged order within groups
    series: dict[str, tuple[list[float], list[float]]] = {}
    for key in keys:
        xs, ys = [], []
        for i, row in enumerate(rows):
            value = row.get(key)
            if value is None or not math.isfinite(float(value)):
                continue
            xs.append(float(row.get("step", i)))
            ys.append(float(value))
        if ys:
            series[key] = (xs, ys)
    return series


def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas, without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


# ------------------------------------------------------------------- metric


class Figures(Metric):
    """PNG figures of a trained run, written to the run's ``figures/`` folder.

    ``which`` picks any of:

    * ``samples``: ancestral samples z ~ p(z), x = E[x|z], a grid x grid grid
      (``samples.png``).
    * ``markov_chain``: InfoVAE Proposition 1's chain z_t ~ q(z|x_t),
      x_{t+1} ~ p(x|z_t) for ``chain_steps`` steps, one row per chain and one
      column every ``chain_keep_every`` steps (first column: x_0), started
      from test images (``markov_chain_data.png``) and from uniform noise
      (``markov_chain_noise.png``); grid chains each. Under L_AE ancestral
      samples fail while this chain still reaches the data distribution.
    * ``reconstructions``: rows of test inputs, each above the row of their
      reconstructions E[x | z = mean q(z|x)] (``reconstructions.png``).
    * ``corrupted_reconstructions``: per condition in ``conditions`` (default:
      every corruption of the suite), rows clean / corrupted / reconstruction
      of the corrupted input, as VIMAE Fig. 2 (``corrupted_reconstructions_<name>.png``).
    * ``latent_scatter``: posterior means of test images coloured by class,
      over grey prior samples, as VIMAE Fig. 1; latent_dim > 2 is shown by its
      first two principal components (said in the title) (``latent_scatter.png``).
    * ``curves``: each logged training quantity (loss terms, then ``probe/*``)
      against step, one panel each (``curves.png``); skipped if none were logged.

    Images are shown over the dataset's value range. Values: none; the files
    are listed in the result's ``figures``.
    Params: which, grid, chain_steps, chain_keep_every, conditions, scatter_points.
    """

    class Params(Params):
        which: list[FigureKind] = Field(list(ALL_KINDS), min_length=1,
                                        description="figures to draw")
        grid: int = Field(10, ge=1, le=32, description="tiles per row (and rows of samples)")
        chain_steps: int = Field(20, ge=1, description="Markov chain steps T")
        chain_keep_every: int = Field(2, ge=1, description="show every k-th chain state")
        conditions: list[str] | None = Field(None, description="corruptions to show; default all "
                                             "of the suite ('clean' shows the plain reconstruction)")
        scatter_points: int = Field(2000, gt=0, description="test images in the latent scatter "
                                    "(and prior samples drawn beside them)")

    def conditions_used(self, available):
        if "corrupted_reconstructions" not in self.params.which:
            return []
        return list(available) if self.params.conditions is None else super().conditions_used(available)

    def produces(self) -> list[str]:
        return []  # figures only

    def figures_written(self, corruptions: list[str]) -> list[str]:
        names = {"samples": ["samples.png"],
                 "markov_chain": ["markov_chain_data.png", "markov_chain_noise.png"],
                 "reconstructions": ["reconstructions.png"],
                 "corrupted_reconstructions": [
                     f"corrupted_reconstructions_{safe_name(c)}.png"
                     for c in (self.params.conditions if self.params.conditions is not None
                               else corruptions)],
                 "latent_scatter": ["latent_scatter.png"], "curves": ["curves.png"]}
        return [f for kind in dict.fromkeys(self.params.which) for f in names[kind]]

    def evaluate(self, ctx) -> MetricResult:
        draw = {
            "samples": self.draw_samples,
            "markov_chain": self.draw_markov_chains,
            "reconstructions": self.draw_reconstructions,
            "corrupted_reconstructions": self.draw_corrupted_reconstructions,
            "latent_scatter": self.draw_latent_scatter,
            "curves": self.draw_curves,
        }
        folder = ctx.figure_dir
        written: list[Path] = []
        for kind in dict.fromkeys(self.params.which):
            written.extend(draw[kind](ctx, folder))
        run_dir = Path(ctx.run_dir)
        return MetricResult(values={}, figures=[str(p.relative_to(run_dir)) for p in written])

    # -- image grids

    def value_range(self, ctx) -> tuple[float, float]:
        return tuple(ctx.dataset.info().value_range)

    def test_images(self, ctx, n: int) -> Tensor:
        return ctx.test.x[:n].to(ctx.device)

    def draw_samples(self, ctx, folder: Path) -> list[Path]:
        g = self.params.grid
        samples = ctx.model.sample_prior(g * g, generator=ctx.generator(SALT_SAMPLES))
        return [save_grid(samples, folder / "samples.png", g, self.value_range(ctx))]

    def draw_markov_chains(self, ctx, folder: Path) -> list[Path]:
        g, lo_hi = self.params.grid, self.value_range(ctx)
        data_start = self.test_images(ctx, g)
        lo, hi = lo_hi
        noise = torch.rand(data_start.shape, generator=ctx.generator(SALT_NOISE_START))
        noise_start = (lo + (hi - lo) * noise).to(ctx.device)
        paths = []
        for name, start, salt in (("markov_chain_data.png", data_start, SALT_CHAIN_DATA),
                                  ("markov_chain_noise.png", noise_start, SALT_CHAIN_NOISE)):
            states = ctx.model.markov_chain(start, self.params.chain_steps, generator=ctx.generator(salt),
                                            keep_every=self.params.chain_keep_every)
            chains = torch.stack([s.cpu() for s in states], 1)  # (chains, states, C, H, W)
            paths.append(save_grid(chains.flatten(0, 1), folder / name, len(states), lo_hi))
        return paths

    def draw_reconstructions(self, ctx, folder: Path) -> list[Path]:
        g = self.params.grid
        pairs = max(1, g // 2)
        x = self.test_images(ctx, g * pairs)
        recon = ctx.model.reconstruct(x)
        rows = []
        for p in range(pairs):
            rows += [x[p * g:(p + 1) * g].cpu(), recon[p * g:(p + 1) * g].cpu()]
        return [save_grid(torch.cat(rows), folder / "reconstructions.png", g, self.value_range(ctx))]

    def draw_corrupted_reconstructions(self, ctx, folder: Path) -> list[Path]:
        names = self.params.conditions if self.params.conditions is not None else list(ctx.corruptions)
        unknown = [n for n in names if n != "clean" and n not in ctx.corruptions]
        if unknown:
            raise BenchbedError(f"figures: unknown condition(s) {unknown}; the suite's corruptions are "
                                f"{sorted(ctx.corruptions) or 'none'} (plus 'clean')")
        x = self.test_images(ctx, self.params.grid)
        paths = []
        for i, name in enumerate(names):
            generator = ctx.generator(SALT_CORRUPT + 100 * i)
            corrupted = x if name == "clean" else ctx.corruptions[name](x.clone(), generator)
            recon = ctx.model.reconstruct(corrupted)
            path = folder / f"corrupted_reconstructions_{safe_name(name)}.png"
            paths.append(save_grid(torch.cat([x.cpu(), corrupted.cpu(), recon.cpu()]), path,
                                   self.params.grid, self.value_range(ctx)))
        return paths

    # -- plots

    def draw_latent_scatter(self, ctx, folder: Path) -> list[Path]:
        n = self.params.scatter_points
        codes = posterior_means(ctx.model, ctx.test.x[:n], ctx.device)
        prior = ctx.model.prior.sample(len(codes), codes.shape[1], generator=ctx.generator(SALT_PRIOR))
        points, prior_points, axes = project_to_plane(codes, prior.cpu())
        labels = None if ctx.test.y is None else ctx.test.y[:n].cpu()

        figure = new_figure(6, 5.5)
        ax = figure.subplots()
        ax.scatter(prior_points[:, 0], prior_points[:, 1], s=3, c="0.75", alpha=0.5,
                   label="prior samples", rasterized=True)
        if labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=3, c="tab:blue", label="test codes")
        else:
            k = int(labels.max()) + 1
            cmap = "tab10" if k <= 10 else "tab20" if k <= 20 else "viridis"
            cloud = ax.scatter(points[:, 0], points[:, 1], s=3, c=labels, cmap=cmap,
                               vmin=-0.5, vmax=k - 0.5)
            figure.colorbar(cloud, ax=ax, label="class", ticks=range(k) if k <= 20 else None)
        ax.legend(loc="upper right", markerscale=4, fontsize="small")
        ax.set_title(f"Posterior means of test images: {axes}", fontsize="medium")
        path = folder / "latent_scatter.png"
        figure.savefig(path)
        return [path]

    def draw_curves(self, ctx, folder: Path) -> list[Path]:
        series = curve_series(ctx.curves)
        if not series:
            return []
        cols = min(3, len(series))
        rows = math.ceil(len(series) / cols)
        figure = new_figure(4 * cols, 3 * rows)
        axes = figure.subplots(rows, cols, squeeze=False).ravel()
        for ax, (key, (xs, ys)) in zip(axes, series.items()):
            ax.plot(xs, ys, lw=1, marker="o" if len(xs) < 20 else None, ms=3)  # a lone point must show
            ax.set_title(key, fontsize="medium")
            ax.set_xlabel("step")
        for ax in axes[len(series):]:
            ax.set_visible(False)
        figure.tight_layout()
        path = folder / "curves.png"
        figure.savefig(path)
        return [path]


@hookimpl
def register_metrics(register):
    register("figures", Figures)
