"""Time each disentanglement score on 10k codes against the obvious NumPy version, in one run.

Codes: N = 10,000 posterior-mean-like codes of D = 10 latents for points
drawn at random from the dSprites factor grid (3 x 6 x 40 x 32 x 32): five
latents are noisy, partly mixed factors, five are noise. Each score runs
in its vectorised form (the plugin's function) and in the loop one writes
first (one point, one vote or one latent-factor pair at a time, as
disentanglement_lib does); both are timed here, the ratio printed, and
their values shown side by side (they differ only by random draws, except
MIG and the Gaussian TC, which must agree exactly). DCI's random forest is
timed against disentanglement_lib's gradient-boosted trees on the 3-class
shape factor only (the 40-class factors take minutes with boosting).

    python benchmarks/disentanglement.py            # ~1 minute on one core
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchbed_plugins.metrics.disentanglement.beta_vae_score import beta_vae_score
from benchbed_plugins.metrics.disentanglement.dci import dci, importance_matrix
from benchbed_plugins.metrics.disentanglement.factorvae_score import factorvae_score
from benchbed_plugins.metrics.disentanglement.mig import mig
from benchbed_plugins.metrics.disentanglement.sap import sap
from benchbed_plugins.metrics.disentanglement.gaussian_tc import gaussian_total_correlation
from benchbed_plugins.metrics.disentanglement.factors import histogram_discretize

SIZES = (3, 6, 40, 32, 32)


def make_codes(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = np.stack([rng.integers(s, size=n) for s in SIZES], 1)
    v = classes / (np.array(SIZES) - 1)
    mixed = v.copy()
    mixed[:, 3], mixed[:, 4] = v[:, 3] + 0.3 * v[:, 4], v[:, 4] - 0.3 * v[:, 3]
    codes = np.concatenate([mixed, np.zeros((n, dim - len(SIZES)))], 1) + 0.3 * rng.standard_normal((n, dim))
    return codes, classes


# ----------------------------------------------------- the obvious versions


def beta_vae_loop(codes, classes, rng, pairs=64, num_train=10000, num_eval=5000):
    from sklearn.linear_model import LogisticRegression

    def points(count):
        x, y = [], []
        for _ in range(count):
            k = rng.integers(classes.shape[1])
            diffs = []
            for _ in range(pairs):
                a = rng.integers(len(codes))
                same = np.flatnonzero(classes[:, k] == classes[a, k])
                diffs.append(np.abs(codes[a] - codes[rng.choice(same)]))
            x.append(np.mean(diffs, axis=0))
            y.append(k)
        return np.array(x), np.array(y)

    x_tr, y_tr = points(num_train)
    x_ev, y_ev = points(num_eval)
    return LogisticRegression(max_iter=1000).fit(x_tr, y_tr).score(x_ev, y_ev)


def factorvae_loop(codes, classes, rng, batch=64, num_train=10000, num_eval=5000):
    scale = np.std(codes[rng.integers(len(codes), size=10000)], axis=0, ddof=1)
    active = scale >= 0.05

    def votes(count):
        out = np.zeros((codes.shape[1], classes.shape[1]), dtype=np.int64)
        for _ in range(count):
            k = rng.integers(classes.shape[1])
            same = np.flatnonzero(classes[:, k] == classes[rng.integers(len(codes)), k])
            var = np.var(codes[rng.choice(same, batch)] / scale, axis=0, ddof=1)
            out[np.argmin(np.where(active, var, np.inf)), k] += 1
        return out

    train, evals = votes(num_train), votes(num_eval)
    vote = train.argmax(1)
    return evals[np.arange(len(vote)), vote].sum() / evals.sum()


def mig_loop(codes, classes, bins=20):
    from sklearn.metrics import mutual_info_score

    disc = histogram_discretize(codes, bins)
    mi = np.array([[mutual_info_score(classes[:, k], disc[:, d]) for k in range(classes.shape[1])]
                   for d in range(codes.shape[1])])
    h = np.array([mutual_info_score(classes[:, k], classes[:, k]) for k in range(classes.shape[1])])
    top = np.sort(mi, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / h))


def sap_loop(codes, values):
    matrix = np.zeros((codes.shape[1], values.shape[1]))
    for d in range(codes.shape[1]):
        for k in range(values.shape[1]):
            c = np.cov(codes[:, d], values[:, k], ddof=1)
            matrix[d, k] = c[0, 1] ** 2 / (c[0, 0] * c[1, 1]) if c[0, 0] > 1e-12 else 0.0
    top = np.sort(matrix, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


def tc_loop(z):
    cov = np.cov(z, rowvar=False)
    return 0.5 * (np.sum(np.log(np.diag(cov))) - np.log(np.linalg.det(cov)))


# ------------------------------------------------------------------- timing


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=10)
    args = ap.parse_args()
    codes, classes = make_codes(args.n, args.dim)
    values = classes.astype(float)
    cut = int(round(args.n * 2 / 3))
    rows = [
        ("beta_vae_score", lambda: beta_vae_score(codes, classes, SIZES, np.random.default_rng(1))["eval_accuracy"],
         lambda: beta_vae_loop(codes, classes, np.random.default_rng(1))),
        ("factorvae_score", lambda: factorvae_score(codes, classes, SIZES, np.random.default_rng(1))["eval_accuracy"],
         lambda: factorvae_loop(codes, classes, np.random.default_rng(1))),
        ("mig", lambda: mig(codes, classes, SIZES)["mig"], lambda: mig_loop(codes, classes)),
        ("sap (continuous)", lambda: sap(codes, classes, values, SIZES, "continuous")["sap"],
         lambda: sap_loop(codes, values)),
        ("gaussian_tc", lambda: gaussian_total_correlation(codes), lambda: tc_loop(codes)),
        ("dci importance, shape only: forest vs boosting",
         lambda: importance_matrix(codes[:cut], classes[:cut, :1], codes[cut:], classes[cut:, :1])[2][0],
         lambda: importance_matrix(codes[:cut], classes[:cut, :1], codes[cut:], classes[cut:, :1],
                                   model="gradient_boosting")[2][0]),
    ]
    print(f"N = {args.n}, D = {args.dim}, factors {SIZES}")
    print(f"{'score':<48} {'ours s':>8} {'obvious s':>10} {'ratio':>7}   ours / obvious value")
    for name, ours, obvious in rows:
        v_ours, t_ours = timed(ours)
        v_obv, t_obv = timed(obvious)
        print(f"{name:<48} {t_ours:8.2f} {t_obv:10.2f} {t_obv / t_ours:7.1f}   {v_ours:.4f} / {v_obv:.4f}",
              flush=True)
    for name, fn in (("sap (discrete, LinearSVC, as disentanglement_lib)",
                      lambda: sap(codes, classes, values, SIZES, "discrete")["sap"]),
                     ("dci (10-tree forest, all five factors)", lambda: dci(codes, classes, SIZES)["disentanglement"])):
        v, t = timed(fn)
        print(f"{name:<48} {t:8.2f} {'':>10} {'':>7}   {v:.4f}", flush=True)


if __name__ == "__main__":
    main()
