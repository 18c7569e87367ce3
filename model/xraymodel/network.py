"""The classifier as the design record specifies it, and the layer names others rely on.

    input [S, S, 3] (resnet50.preprocess_input applied)  ->  Keras ResNet50 (include_top=False)
    -> GlobalAveragePooling2D -> Dense(256, relu) -> Dense(k) "logits" -> sigmoid | softmax "probabilities"

The backbone is built with ``input_tensor`` so its layers are flat in one functional graph: Grad-CAM
reads ``conv5_block3_out`` and fine-tuning unfreezes the ``conv5_`` (then ``conv4_``) blocks by name.
Keras and TensorFlow are imported here at module level: only command handlers import this module.
"""

from __future__ import annotations

from pathlib import Path

import keras

HEAD_MULTILABEL = "multilabel"  # sigmoid per finding, binary cross-entropy
HEAD_SOFTMAX = "softmax"  # exactly one class per image
HEADS = (HEAD_MULTILABEL, HEAD_SOFTMAX)

LAST_CONV_LAYER = "conv5_block3_out"
LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"
# ResNet-50 stages from the top; fine-tuning unfreezes the first N of these.
BACKBONE_STAGES_TOP_DOWN = ("conv5_", "conv4_", "conv3_", "conv2_")
HEAD_LAYERS = ("avg_pool", "fc256", LOGITS_LAYER, PROBABILITIES_LAYER)

WEIGHTS_NONE = "none"
WEIGHTS_IMAGENET = "imagenet"
NOTOP_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


class BackboneWeightsError(RuntimeError):
    """Backbone weights could not be obtained or did not fit."""


def build_classifier(
    num_labels: int,
    input_size: int = 224,
    head: str = HEAD_MULTILABEL,
    backbone_weights: str | Path | None = None,
) -> keras.Model:
    """ResNet-50 classifier; ``backbone_weights`` is None/"none", "imagenet" or a local weights file."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    if input_size < 32:
        raise ValueError(f"input size must be >= 32 px (ResNet-50 downsamples 32x), not {input_size}")
    weights = _resolve_backbone_weights(backbone_weights)
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    try:
        backbone = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=inputs)
    except Exception as exc:  # URL fetch failure offline, or a file that does not fit
        if weights == WEIGHTS_IMAGENET:
            raise BackboneWeightsError(
                "could not download the ImageNet ResNet-50 weights (offline?): pass a local weights file "
                f"such as {NOTOP_WEIGHTS_FILE} with --weights PATH ({exc})"
            ) from exc
        raise BackboneWeightsError(f"could not load backbone weights from {weights}: {exc}") from exc
    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    hidden = keras.layers.Dense(256, activation="relu", name="fc256")(features)
    logits = keras.layers.Dense(num_labels, name=LOGITS_LAYER)(hidden)
    activation = "sigmoid" if head == HEAD_MULTILABEL else "softmax"
    probabilities = keras.layers.Activation(activation, dtype="float32", name=PROBABILITIES_LAYER)(logits)
    return keras.Model(inputs, probabilities, name="resnet50_chestxray")


def _resolve_backbone_weights(backbone_weights: str | Path | None) -> str | None:
    if backbone_weights is None or str(backbone_weights).lower() == WEIGHTS_NONE:
        return None
    if str(backbone_weights) == WEIGHTS_IMAGENET:
        return WEIGHTS_IMAGENET
    path = Path(backbone_weights)
    if not path.is_file():
        raise BackboneWeightsError(f"backbone weights file not found: {path}")
    return str(path)


def set_trainable_stages(model: keras.Model, stages: int) -> int:
    """Freeze the backbone except its top ``stages`` stages (0 = head only); return trainable layers.

    BatchNormalization layers stay frozen (inference mode) while fine-tuning, as is usual when the
    batches are small. ``stages`` >= 4 trains the whole backbone, BatchNormalization included.
    """
    train_all = stages >= len(BACKBONE_STAGES_TOP_DOWN)
    prefixes = BACKBONE_STAGES_TOP_DOWN[: max(0, stages)]
    count = 0
    for layer in model.layers:
        if layer.name in HEAD_LAYERS:
            layer.trainable = True
        elif train_all:
            layer.trainable = True
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = layer.name.startswith(prefixes) if prefixes else False
        count += int(layer.trainable and bool(layer.weights))
    return count


def head_on_features(model: keras.Model, feature_width: int) -> keras.Model:
    """The classifier's own head layers applied to pooled backbone features (weights shared)."""
    features = keras.Input(shape=(feature_width,), name="pooled_features")
    hidden = model.get_layer("fc256")(features)
    logits = model.get_layer(LOGITS_LAYER)(hidden)
    return keras.Model(features, model.get_layer(PROBABILITIES_LAYER)(logits), name="head_only")
