"""Process-wide TensorFlow/Keras setup done once, right before the first TF work of a command.

KERAS_HOME defaults to a private directory (Keras writes ~/.keras on import), log noise is
reduced, and the seed makes weight initialisation, shuffling and splits repeatable.
"""

from __future__ import annotations

import os
import tempfile


def configure(seed: int | None = None) -> None:
    """Set environment defaults, import Keras, and seed Python, NumPy and TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("KERAS_HOME", os.path.join(tempfile.gettempdir(), "xraymodel-keras-home"))
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
