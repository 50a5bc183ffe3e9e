"""Fitting the type classifier (scikit-learn: the `[train]` extra). Applying it needs neither."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from fabricad.defect_types.classifier import (
    Example,
    TypeClassifier,
    geometry_type,
    load_types,
)
from fabricad.defect_types.descriptors import FEATURE_NAMES
from fabricad.errors import DataError, FabricadError

MIN_PER_TYPE = 2


def fit_types(examples: list[Example], unknown_below: float = 0.5, c: float = 1.0) -> TypeClassifier:
    """A classifier over `examples`' labels; types with fewer than `MIN_PER_TYPE` examples are
    left out (one example teaches nothing that generalises) and the rest must be two or more.
    Classes are weighted by their counts' inverse, so a rare type is not drowned by a common one."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise FabricadError("fitting defect types needs scikit-learn: pip install 'fabricad[train]'") from None
    counts = Counter(e.label for e in examples)
    kept = sorted(label for label, n in counts.items() if n >= MIN_PER_TYPE)
    if len(kept) < 2:
        raise DataError("defect types need at least two types with " f"{MIN_PER_TYPE}+ labelled examples each; have "
                        + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"))
    used = [e for e in examples if e.label in kept]
    x = np.asarray([e.features for e in used], dtype=np.float64)
    if x.shape[1] != len(FEATURE_NAMES):
        raise DataError(f"examples have {x.shape[1]} descriptors, this fabricad makes {len(FEATURE_NAMES)}")
    y = np.asarray([kept.index(e.label) for e in used])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit((x - mean) / scale, y)
    coef, intercept = model.coef_, model.intercept_
    if len(kept) == 2:  # scikit-learn keeps one row for two classes: softmax of ±z/2 is its sigmoid
        coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return TypeClassifier(classes=kept, mean=mean.tolist(), scale=scale.tolist(), coef=coef.tolist(),
                          intercept=intercept.tolist(), unknown_below=unknown_below, examples=list(examples))


def _geometry_of(example: Example) -> str:
    width, height = (np.exp(example.features[FEATURE_NAMES.index(n)]) for n in ("log_width", "log_height"))
    return geometry_type(width, height).type


def leave_one_image_out(examples: list[Example], min_images: int = 3, c: float = 1.0, progress: bool = False) -> dict:
    """How well the classifier names defects it has not seen: each image's defects are predicted
    by a classifier fitted on every other image's, for the types found on at least `min_images`
    images. Beside it in the same folds, the geometry rules, each rule class (spot, line along,
    line across) named by the type most of its training defects have: the best the rules can do.
    Returns accuracy, macro-F1 and per-type accuracy for both."""
    from sklearn.metrics import accuracy_score, f1_score
    from tqdm import tqdm

    images: dict[str, set[str]] = {}
    for e in examples:
        images.setdefault(e.label, set()).add(e.group)
    kept = sorted(label for label, groups in images.items() if len(groups) >= min_images)
    used = [e for e in examples if e.label in kept]
    groups = sorted({e.group for e in used})
    if len(kept) < 2:
        raise DataError(f"leave-one-image-out needs two or more types on {min_images}+ images each")
    truth, ours, rules = [], [], []
    for group in tqdm(groups, desc="leave one image out", unit="image", disable=not progress, leave=False):
        train = [e for e in used if e.group != group]
        test = [e for e in used if e.group == group]
        model = fit_types(train, unknown_below=0.0, c=c)
        named = {}
        for kind in ("spot", "line_along", "line_across"):
            votes = Counter(e.label for e in train if _geometry_of(e) == kind) or Counter(e.label for e in train)
            named[kind] = votes.most_common(1)[0][0]
        for e, verdict in zip(test, model.judge(np.asarray([e.features for e in test]))):
            truth.append(e.label)
            ours.append(verdict.type)
            rules.append(named[_geometry_of(e)])

    def scores(predicted: list[str]) -> dict:
        per_type = {k: float(np.mean([p == k for t, p in zip(truth, predicted) if t == k])) for k in kept}
        return {"accuracy": float(accuracy_score(truth, predicted)),
                "macro_f1": float(f1_score(truth, predicted, labels=kept, average="macro", zero_division=0)),
                "per_type": per_type}

    return {"types": {k: {"defects": truth.count(k), "images": len(images[k])} for k in kept},
            "defects": len(truth), "images": len(groups), "classifier": scores(ours), "geometry_rules": scores(rules),
            "predictions": {"truth": truth, "classifier": ours, "geometry_rules": rules}}


def refit(folder: Path, new: list[Example], replaces: set[str], unknown_below: float | None = None,
          validate: bool = True, progress: bool = False) -> tuple[TypeClassifier, dict | None]:
    """Fit the classifier of bundle `folder` on `new` examples plus those its current file keeps
    whose source is not in `replaces` (re-reading a dataset replaces its old examples; the
    operators' labels stay), validate it leave-one-image-out where there are enough images, and
    save it into the folder. Returns (classifier, validation figures or None)."""
    current = load_types(folder)
    kept = [e for e in (current.examples if current else []) if e.source not in replaces]
    examples = kept + new
    threshold = unknown_below if unknown_below is not None else (current.unknown_below if current else 0.5)
    model = fit_types(examples, unknown_below=threshold)
    figures = None
    if validate:
        try:
            figures = leave_one_image_out(examples, progress=progress)
        except DataError:  # too few images per type to hold one out: the classifier still stands
            pass
    model.validation = figures
    model.save(folder)
    return model, figures
