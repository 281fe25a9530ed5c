"""Semi-supervised SVM accuracy on the encoder's features, clean and corrupted
(InfoVAE section 4.2.1 (4), VIMAE Table 1)."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, PositiveFloat, field_validator
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics.encoding import (CLEAN, balanced_label_indices, check_conditions,
                                       condition_batches, condition_salt, encode, encode_batches,
                                       evaluating, input_batches, subset_indices,
                                       validate_condition_list)

_LABEL_SALT = 0x53564D31   # which training examples are labelled
_SUBSET_SALT = 0x53564D32  # reduced protocols: which test points
_CV_SALT = 0x53564D33      # the cross-validation folds
_REFIT_SALT = 0x53564D34   # svm_refit: the labelled images' own corruption draw


def fit_svm(features: np.ndarray, labels: np.ndarray, c_grid: list[float], folds: int, seed: int):
    """RBF SVC on standardised features, C picked by stratified k-fold CV on the
    labelled set alone. scikit-learn does the work (Pipeline keeps the scaler
    inside each CV fold, so no fold sees another's statistics)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    pipeline = Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="rbf", gamma="scale"))])
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    search = GridSearchCV(pipeline, {"svc__C": list(c_grid)}, cv=cv, n_jobs=1)
    return search.fit(features, labels)


def _finite(features: Tensor, where: str) -> np.ndarray:
    if not torch.isfinite(features).all():
        raise BenchbedError(f"svm: the encoder produced non-finite features on {where}; "
                            f"the run has probably diverged")
    return features.double().numpy()


class SemiSupervisedSVM(Metric):
    """Test accuracy (percent) of an RBF SVM trained on the codes of a few labelled examples (InfoVAE Fig. 3 E, VIMAE Table 1).

    Features f(x) = posterior mean of q(z|x). ``labels`` training examples
    (default 1000, class-balanced: labels / num_classes per class, remainder
    to the lowest class ids) are drawn from the TRAIN split with the run seed.
    Classifier: StandardScaler + SVC(kernel="rbf", gamma="scale"), with C
    chosen from ``c_grid`` by stratified ``cv_folds``-fold cross-validation on
    the labelled set only (scikit-learn's GridSearchCV).

    The SVM is fitted once on clean features and tested on the whole test set
    (or ``test_subset`` points) under each of ``conditions``: "clean" or a
    corruption the suite defines, applied to the test inputs with a generator
    seeded from the run seed and the condition name before encoding (VIMAE:
    robustness of the features to Gaussian noise and masking).

        accuracy/<condition> = 100 * mean_i [svm(f(corrupt(x_i))) = y_i]
        error/<condition>    = 100 - accuracy/<condition>

    Values: ``accuracy/<c>``, ``error/<c>`` for every condition, ``c`` (the
    chosen C), ``labels``.

    Params: labels, c_grid, cv_folds, conditions, test_subset, batch_size.
    """

    refit = False  # RefittedSVM: fit again on each condition's corrupted labelled codes

    class Params(Params):
        labels: int = Field(1000, gt=0, description="labelled training examples, class-balanced")
        c_grid: list[PositiveFloat] = Field([0.1, 1.0, 10.0, 100.0], min_length=1,
                                            description="SVC C values tried by cross-validation")
        cv_folds: int = Field(5, ge=2, description="stratified folds for choosing C")
        conditions: list[str] = Field([CLEAN], description="'clean' and/or the suite's "
                                      "corruption names")
        test_subset: int | None = Field(None, gt=0, description="test points (drawn from the "
                                        "run seed); None: the full test set")
        batch_size: int = Field(500, gt=0, description="inputs per encoder batch")

        @field_validator("conditions")
        @classmethod
        def _distinct_conditions(cls, v):
            return validate_condition_list(v)

    def produces(self) -> list[str]:
        return [*(f"{kind}/{c}" for c in self.params.conditions for kind in ("accuracy", "error")),
                "c", "labels"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        check_conditions(p.conditions, ctx.corruptions)
        if ctx.train.y is None or ctx.test.y is None:
            raise BenchbedError("svm needs class labels, but this dataset has none")
        labelled = balanced_label_indices(ctx.train.y, p.labels, ctx.generator(_LABEL_SALT))
        y_train = ctx.train.y[labelled].numpy()
        smallest = int(np.bincount(y_train)[np.unique(y_train)].min())
        if smallest < p.cv_folds:
            raise BenchbedError(f"svm: {smallest} labelled examples in the rarest class cannot "
                                f"fill {p.cv_folds} cross-validation folds; raise labels or lower cv_folds")
        test_idx = subset_indices(len(ctx.test), p.test_subset, ctx.generator(_SUBSET_SALT))
        x_test, y_test = ctx.test.x[test_idx], ctx.test.y[test_idx].numpy()
        cv_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(_CV_SALT)))

        values: dict[str, float] = {}
        chosen: list[float] = []
        with evaluating(ctx.model) as model:
            search = None
            for condition in p.conditions:
                if search is None or self.refit:
                    search = fit_svm(_finite(self._labelled_features(ctx, model, condition, labelled),
                                             f"the labelled training examples ({condition})"),
                                     y_train, p.c_grid, p.cv_folds, cv_seed)
                    chosen.append(float(search.best_params_["svc__C"]))
                features = encode_batches(model, condition_batches(ctx, condition, x_test,
                                                                   p.batch_size)).mean
                predicted = search.predict(_finite(features, f"the {condition} test set"))
                accuracy = 100.0 * float(np.mean(predicted == y_test))
                values[f"accuracy/{condition}"] = accuracy
                values[f"error/{condition}"] = 100.0 - accuracy
        values["c"] = chosen[0]  # svm: the clean fit's C; svm_refit: the first condition's
        values["labels"] = float(len(labelled))
        return MetricResult(values=values)

    def _labelled_features(self, ctx, model, condition: str, labelled: Tensor) -> Tensor:
        """Posterior means of the labelled training images: clean for ``svm``;
        under ``condition`` (its own seeded draw, not the test set's) for ``svm_refit``."""
        x = ctx.train.x[labelled]
        if not self.refit or condition == CLEAN:
            return encode(model, x, ctx.device, self.params.batch_size).mean
        draw = ctx.generator(condition_salt(condition) ^ _REFIT_SALT)
        return encode_batches(model, input_batches(x, self.params.batch_size, ctx.device,
                                                   ctx.corruptions[condition], draw)).mean


class RefittedSVM(SemiSupervisedSVM):
    """As ``svm``, but fitted anew under each condition: the labelled training
    images are corrupted as the test images are (an independent draw), and
    the SVM, C chosen again by cross-validation, is fitted on their codes.

    One reading of VIMAE §5.2's "we performed the same algorithm on the
    representation associated to a corrupted data": the whole semi-supervised
    procedure runs on corrupted data. ``svm`` is the other: how a classifier
    of clean codes transfers to corrupted ones.

        accuracy/<condition> = 100 * mean_i [svm_<condition>(f(corrupt(x_i))) = y_i]

    Values as ``svm``; ``c`` is the C chosen for the first condition (list
    "clean" first to report the clean fit's).
    """

    refit = True


@hookimpl
def register_metrics(register):
    register("svm", SemiSupervisedSVM)
    register("svm_refit", RefittedSVM)
