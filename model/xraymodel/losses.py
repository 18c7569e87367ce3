"""Class-weighted losses for imbalanced findings, and how their weights are derived.

Multi-label: binary cross-entropy with a per-finding weight on the positive term,
w_k = clip(negatives_k / positives_k, 1, MAX_POSITIVE_WEIGHT), so a rare finding (Hernia: 0.2% of
ChestX-ray14) is not learnt as "always absent". Single-label: categorical cross-entropy weighted
by n / (k * n_c). Both are registered Keras serialisables, so checkpoints reload with them.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

MAX_POSITIVE_WEIGHT = 50.0


def positive_weights(labels: np.ndarray, enabled: bool = True) -> list[float]:
    """Per-finding positive-class weights from a [n, k] 0/1 training label matrix."""
    labels = np.asarray(labels, dtype=np.float64)
    if not enabled:
        return [1.0] * labels.shape[1]
    positives = labels.sum(axis=0)
    negatives = labels.shape[0] - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), MAX_POSITIVE_WEIGHT)
    return np.clip(ratio, 1.0, MAX_POSITIVE_WEIGHT).round(4).tolist()


def class_weights(labels: np.ndarray, enabled: bool = True) -> list[float]:
    """Single-label class weights n / (k n_c) from a [n, k] one-hot label matrix."""
    labels = np.asarray(labels, dtype=np.float64)
    if not enabled:
        return [1.0] * labels.shape[1]
    counts = labels.sum(axis=0)
    weights = np.where(counts > 0, labels.shape[0] / (labels.shape[1] * np.maximum(counts, 1)), 1.0)
    return np.clip(weights, 1.0 / MAX_POSITIVE_WEIGHT, MAX_POSITIVE_WEIGHT).round(4).tolist()


@keras.saving.register_keras_serializable(package="xraymodel")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Mean over findings of -(w_k y log p + (1 - y) log(1 - p))."""

    def __init__(self, positive_weights: list[float], name: str = "weighted_binary_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        weights = ops.convert_to_tensor(self.positive_weights, dtype=y_pred.dtype)
        # Keras computes this from the sigmoid's logits when it can (no saturation, no clipping).
        per_label = ops.binary_crossentropy(y_true, y_pred)
        return ops.mean(per_label * (1.0 + (weights - 1.0) * y_true), axis=-1)

    def get_config(self):
        return {**super().get_config(), "positive_weights": self.positive_weights}


@keras.saving.register_keras_serializable(package="xraymodel")
class WeightedCategoricalCrossentropy(keras.losses.Loss):
    """-sum_c w_c y_c log p_c for one-hot targets."""

    def __init__(self, class_weights: list[float], name: str = "weighted_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return ops.categorical_crossentropy(y_true, y_pred) * ops.sum(weights * y_true, axis=-1)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}
