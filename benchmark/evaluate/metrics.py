"""Classification metrics: macro-F1 (the paper's headline), accuracy, per-class scores and the confusion matrix
(scikit-learn's definitions); intervals are :mod:`.intervals`'.
"""

from __future__ import annotations

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true, y_pred, num_classes: int, class_names: list[str] | None = None) -> dict:
    labels = list(range(num_classes))
    present = sorted(set(y_true))  # macro-F1 over the classes present in the evaluated split
    out = {
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "n": len(y_true),
    }
    if class_names is not None:
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        out["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        }
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out
