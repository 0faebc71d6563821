"""The classic baseline: TF-IDF features and a linear classifier, fitted by scikit-learn's own solvers.

Features are scikit-learn's ``TfidfVectorizer`` over word n-grams, character n-grams (within word
boundaries, ``char_wb``) or both side by side (each block L2-normalised, as a ``FeatureUnion`` does). The
classifier is a logistic regression (lbfgs, L2) or a linear SVM whose scores are made probabilities by
scikit-learn's sigmoid calibration. Neither is trained by gradient descent: the family is *solved* in one
pass, and the solution is copied into a small torch module, so that prediction, evaluation, the run
folder and the training history are the same as every other family's.

What is saved is data: the vocabulary (JSON), the idf weights and the coefficients (safetensors) and the
vectorizer's settings; loading rebuilds the analyzer from the settings and never unpickles anything. The
module computes TF-IDF itself from token ids (counts, ``1 + log`` when sublinear, times idf, L2 norm),
exactly as ``TfidfVectorizer.transform`` does, then a sparse product (``EmbeddingBag`` in sum mode).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ajuste.atomic import plain_permissions
from ajuste.errors import ConfigError, first_line
from ajuste.models.base import Bars, Family, PaddedSum, TrainingDefaults, load_weights, padded_bags, save_weights
from ajuste.models.memory import check_memory
from ajuste.models.settings import LinearSettings

__all__ = ["DEFAULT_SPACE", "LinearFamily", "SparseLinear"]

log = logging.getLogger(__name__)

VOCAB_FILE = "vocabulary.json"
IDF_FILE = "idf.safetensors"
#: A class the training split lacks can never win (its score is this far below the others).
_ABSENT = -1e4

#: The default search space: regularisation, features and weighting, the settings that matter for TF-IDF models.
DEFAULT_SPACE: dict[str, Any] = {
    "model.classifier": ["logistic", "svm"],
    "model.C": {"low": 0.01, "high": 100.0, "log": True},
    "model.analyzer": ["word", "char", "word+char"],
    "model.word_ngrams": {"low": 1, "high": 3, "when": "model.analyzer != 'char'"},
    "model.char_ngrams": {"low": 3, "high": 6, "when": "model.analyzer != 'word'"},
    "model.sublinear_tf": [True, False],
    "model.min_df": [1, 2, 3],
    "model.class_weight": ["none", "balanced"],
    "train.epochs": 1,
}


class SparseLinear(nn.Module):
    """Scores of TF-IDF vectors: a sparse product, plus, for a calibrated SVM, the per-class sigmoids.

    ``forward`` returns logits: the linear scores for logistic regression (softmax of them is its
    probabilities) and log-probabilities for a calibrated SVM (softmax of them is the calibrated
    probabilities, normalised as scikit-learn does).
    """

    def __init__(self, num_features: int, num_scores: int, num_labels: int, calibrated: bool) -> None:
        super().__init__()
        self.scores = nn.EmbeddingBag(num_features, num_scores, mode="sum")
        self.bias = nn.Parameter(torch.zeros(num_scores))
        self.num_labels = num_labels
        self.calibrated = calibrated
        # sklearn's _SigmoidCalibration: p = 1 / (1 + exp(a * score + b)), one pair per score column
        self.calibration_a = nn.Parameter(torch.zeros(num_scores), requires_grad=False)
        self.calibration_b = nn.Parameter(torch.zeros(num_scores), requires_grad=False)
        nn.init.zeros_(self.scores.weight)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.logits(self.scores(ids, offsets, per_sample_weights=weights))

    def logits(self, products: torch.Tensor) -> torch.Tensor:
        """The logits from the sparse products of the TF-IDF vectors with the coefficients."""
        scores = products + self.bias
        if not self.calibrated:
            return scores
        probabilities = torch.sigmoid(-(self.calibration_a * scores + self.calibration_b))
        if self.num_labels == 2:  # one score: the positive class's
            probabilities = torch.cat([1 - probabilities, probabilities], dim=1)
        else:
            total = probabilities.sum(dim=1, keepdim=True)
            uniform = torch.full_like(probabilities, 1.0 / self.num_labels)
            probabilities = torch.where(total > 0, probabilities / total.clamp_min(1e-300), uniform)
        return torch.log(probabilities.clamp_min(1e-12))


class LinearFamily(Family):
    """TF-IDF + logistic regression or calibrated linear SVM; solved, not trained by gradient descent."""

    name = "linear"
    solver = True

    def __init__(self, settings: LinearSettings) -> None:
        self.settings = settings
        self.vectorizers: list[Any] = []  # fitted TfidfVectorizers, one per block (words, characters)
        self.idf: torch.Tensor | None = None
        self._analyzers: list[Callable[[str], list[str]]] = []
        self._vocabularies: list[dict[str, int]] = []
        self._offsets: list[int] = []

    @property
    def max_length(self) -> int | None:
        return self.settings.max_length

    # -- features --------------------------------------------------------------------------------

    def _blocks(self) -> list[dict[str, Any]]:
        """The settings of each TfidfVectorizer: word n-grams, character n-grams, or both."""
        s = self.settings
        common = {"sublinear_tf": s.sublinear_tf, "min_df": s.min_df, "max_features": s.max_features, "lowercase": True}
        blocks = []
        if s.analyzer in ("word", "word+char"):
            blocks.append({"analyzer": "word", "ngram_range": (1, s.word_ngrams), **common})
        if s.analyzer in ("char", "word+char"):
            blocks.append({"analyzer": "char_wb", "ngram_range": (2, s.char_ngrams), **common})
        return blocks

    def fit_preprocessing(self, texts: Sequence[str], bars: Bars | None = None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizers = []
        for block in self._blocks():
            vectorizer = TfidfVectorizer(**block)
            try:
                vectorizer.fit(list(texts))
            except ValueError:  # no term left: no word of two characters, or min_df above every count
                rare = self.settings.min_df > 1
                unit = "words" if block["analyzer"] == "word" else "character n-grams"
                raise ConfigError(
                    f"the TF-IDF vocabulary of the training texts is empty: no {unit} "
                    + (f"in at least min_df={self.settings.min_df} texts" if rare else "to count")
                    + (
                        " (a word has two letters or digits at least: emoji, signs and one-letter words are none)"
                        if unit == "words"
                        else ""
                    ),
                    fix="Lower [[--min-df||min_df]]."
                    if rare
                    else 'Use [[--analyzer char||analyzer="char"]] (character n-grams), or the bag family.',
                ) from None
            self.vectorizers.append(vectorizer)
        vocabularies = [{str(k): int(v) for k, v in vec.vocabulary_.items()} for vec in self.vectorizers]
        idf = np.concatenate([vec.idf_ for vec in self.vectorizers])
        self._set_features(vocabularies, torch.tensor(idf, dtype=torch.float32))

    def _set_features(self, vocabularies: list[dict[str, int]], idf: torch.Tensor) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vocabularies = vocabularies
        self._analyzers = [TfidfVectorizer(**block).build_analyzer() for block in self._blocks()]
        sizes = [len(v) for v in vocabularies]
        self._offsets = [int(x) for x in np.cumsum([0, *sizes])[:-1]]
        self.idf = idf

    @property
    def num_features(self) -> int:
        return sum(len(v) for v in self._vocabularies)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self.idf is None:
            raise RuntimeError("fit_preprocessing() must run before encode()")
        encoded = []
        for text in texts:
            ids: list[int] = []
            for analyzer, vocabulary, offset in zip(self._analyzers, self._vocabularies, self._offsets):
                ids += [offset + vocabulary[term] for term in analyzer(text) if term in vocabulary]
            encoded.append(ids)
        return encoded

    def collate(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """TF-IDF of each text as scikit-learn computes it: counts (``1 + log`` if sublinear) × idf, then the
        L2 norm of each block; as ids, offsets and weights of a sparse sum."""
        if self.idf is None:
            raise RuntimeError("fit_preprocessing() must run before collate()")
        bounds = torch.tensor([*self._offsets[1:], self.num_features])
        all_ids, all_weights, offsets = [], [], []
        position = 0
        for sequence in sequences:
            offsets.append(position)
            if not sequence:
                continue
            ids, counts = torch.unique(torch.tensor(sequence, dtype=torch.long), return_counts=True)
            tf = counts.double()
            if self.settings.sublinear_tf:
                tf = 1.0 + torch.log(tf)
            weights = tf * self.idf[ids].double()
            block = torch.bucketize(ids, bounds, right=True)
            norms = torch.zeros(len(bounds), dtype=torch.float64).index_add_(0, block, weights * weights).sqrt()
            weights = weights / norms[block].clamp_min(1e-300)
            all_ids.append(ids)
            all_weights.append(weights.float())
            position += len(ids)
        ids = torch.cat(all_ids) if all_ids else torch.zeros(0, dtype=torch.long)
        weights = torch.cat(all_weights) if all_weights else torch.zeros(0)
        return {"ids": ids, "offsets": torch.tensor(offsets, dtype=torch.long), "weights": weights}

    # -- the model ---------------------------------------------------------------------------------

    def _num_scores(self, num_labels: int) -> int:
        # A binary SVM has one decision function; a logistic regression is written as two softmax logits.
        return 1 if self.settings.classifier == "svm" and num_labels == 2 else num_labels

    def build(self, num_labels: int) -> nn.Module:
        scores = self._num_scores(num_labels)
        smaller = "Use a smaller [[--max-features||max_features]] or [[--min-df||min_df]] above 1, or fewer n-grams"
        check_memory(self.name, self.num_features * scores + 3 * scores, smaller)
        return SparseLinear(self.num_features, scores, num_labels, self.settings.classifier == "svm")

    def defaults(self) -> TrainingDefaults:
        # One pass of the solver; the batch size only groups texts for computing the features.
        return TrainingDefaults(lr=None, epochs=1, batch_size=256)

    def solve(
        self, module: nn.Module, texts: Sequence[str], targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> None:
        """Fit the classifier on the training texts with scikit-learn and copy the solution into ``module``."""
        import scipy.sparse

        if not isinstance(module, SparseLinear):
            raise TypeError(f"expected a SparseLinear module, got {type(module).__name__}")
        features = scipy.sparse.hstack([vec.transform(list(texts)) for vec in self.vectorizers]).tocsr()
        y = targets.numpy()
        weights = self._class_weight(y, class_weights)
        if self.settings.classifier == "svm":
            coef, intercept, a, b, classes = self._svm(features, y, weights)
        else:
            coef, intercept, classes = self._logistic(features, y, weights)
            a = b = np.zeros(len(intercept))
        if module.scores.weight.shape[1] == 1:  # a binary SVM: one decision function, for classes[1]
            columns = [0]
        elif coef.shape[0] == 1:  # a binary logistic regression: the logit of classes[1], against 0
            columns = [int(classes[1])]
        else:
            columns = [int(c) for c in classes]
        with torch.no_grad():
            module.scores.weight.zero_()
            module.bias.fill_(_ABSENT)  # a class the training split lacks never wins...
            module.calibration_a.zero_()
            module.calibration_b.fill_(-_ABSENT)  # ...calibrated or not
            if coef.shape[0] == 1 and module.scores.weight.shape[1] > 1:
                module.bias[int(classes[0])] = 0.0
            for row, column in enumerate(columns):
                module.scores.weight[:, column] = torch.tensor(coef[row], dtype=torch.float32)
                module.bias[column] = float(intercept[row])
                module.calibration_a[column] = float(a[row])
                module.calibration_b[column] = float(b[row])

    def _class_weight(self, y: np.ndarray, class_weights: torch.Tensor | None) -> dict[int, float] | str | None:
        if class_weights is not None:  # the data's balancing (class_weight) asked for these
            return {int(c): float(class_weights[int(c)]) for c in np.unique(y)}
        return "balanced" if self.settings.class_weight == "balanced" else None

    def _logistic(self, features: Any, y: np.ndarray, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=self.settings.C, max_iter=self.settings.max_iter, class_weight=weights)
        _fit_quietly(model, features, y)
        return model.coef_, model.intercept_, model.classes_

    def _svm(self, features: Any, y: np.ndarray, weights: Any) -> tuple[np.ndarray, ...]:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import LinearSVC

        smallest = int(np.bincount(y)[np.unique(y)].min()) if len(y) else 0
        folds = min(3, smallest)
        if folds < 2:
            raise ConfigError(
                "a calibrated SVM needs at least two training texts of every class",
                found=f"{smallest} for one class",
                fix="Use model.classifier logistic, or give more texts of that class.",
            )
        # liblinear visits the texts in a shuffled order drawn from numpy's global generator unless given one:
        # two fits of the same texts differed by ~1e-4 in probability. A fixed order makes a fit repeatable.
        svm = LinearSVC(C=self.settings.C, max_iter=self.settings.max_iter, class_weight=weights, random_state=0)
        model = CalibratedClassifierCV(svm, method="sigmoid", cv=folds, ensemble=False)
        _fit_quietly(model, features, y)
        fitted = model.calibrated_classifiers_[0]
        a = np.array([c.a_ for c in fitted.calibrators])
        b = np.array([c.b_ for c in fitted.calibrators])
        return fitted.estimator.coef_, fitted.estimator.intercept_, a, b, model.classes_

    # -- saving ----------------------------------------------------------------------------------

    def save(self, folder: Path, module: nn.Module) -> dict[str, Any]:
        from safetensors.torch import save_file

        if self.idf is None:
            raise RuntimeError("fit_preprocessing() must run before save()")
        (folder / VOCAB_FILE).write_text(json.dumps(self._vocabularies), encoding="utf-8")
        save_weights(module, folder)
        save_file({"idf": self.idf.contiguous()}, str(folder / IDF_FILE))
        plain_permissions(folder / IDF_FILE)
        if not isinstance(module, SparseLinear):
            raise TypeError(f"expected a SparseLinear module, got {type(module).__name__}")
        return {"features": self.num_features, "scores": int(module.scores.weight.shape[1])}

    def restore_preprocessing(self, folder: Path, entries: dict[str, Any]) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        vocabularies = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        if not isinstance(vocabularies, list) or not all(isinstance(v, dict) for v in vocabularies):
            raise ValueError(f"{VOCAB_FILE} is not a list of vocabularies")
        try:
            idf = load_file(str(folder / IDF_FILE))["idf"]
        except (SafetensorError, KeyError) as exc:  # truncated, random bytes, another file
            raise ValueError(f"{IDF_FILE} is damaged ({first_line(exc)})") from None
        self._set_features(vocabularies, idf)
        if len(vocabularies) != len(self._blocks()) or self.idf is None or len(self.idf) != self.num_features:
            raise ValueError("the vocabulary and idf files do not match the settings")

    def restore(self, folder: Path, entries: dict[str, Any], num_labels: int) -> nn.Module:
        self.restore_preprocessing(folder, entries)
        scores = int(entries["scores"])
        if scores != self._num_scores(num_labels):  # the weights have a column per class: another model's labels
            raise ValueError(f"{scores} score columns do not match the {num_labels} labels recorded beside them")
        module = SparseLinear(self.num_features, scores, num_labels, self.settings.classifier == "svm")
        load_weights(module, folder)
        return module

    def export_inputs(self, sequences: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        batch = self.collate(sequences)
        return padded_bags(batch["ids"], batch["offsets"], batch["weights"])

    def export_module(self, module: nn.Module) -> nn.Module:
        if not isinstance(module, SparseLinear):
            raise TypeError(f"expected a SparseLinear module, got {type(module).__name__}")
        return PaddedSum(module.scores.weight, _Logits(module))

    def describe(self) -> dict[str, Any]:
        return {"features": self.num_features, "classifier": self.settings.classifier}


class _Logits(nn.Module):
    """The part of :class:`SparseLinear` after the sparse product, for the exported graph."""

    def __init__(self, linear: SparseLinear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, products: torch.Tensor) -> torch.Tensor:
        return self.linear.logits(products)


def _fit_quietly(model: Any, features: Any, y: np.ndarray) -> None:
    """Fit, turning scikit-learn's convergence warning into a log line (the solution is still usable)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features, y)
    for warning in caught:
        log.info("%s", warning.message)
