"""Per-epoch scalars as TensorBoard event files without the tensorboard package.

Keras' TensorBoard callback needs the ``tensorboard`` wheel (tf.summary.scalar lives there); the
low-level ``tf.summary.write`` op is in TensorFlow itself. This callback writes the same scalar
events (plugin "scalars"), so ``tensorboard --logdir RUN/logs`` shows loss and AUROC curves.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


class ScalarEventLog(keras.callbacks.Callback):
    """Writes every epoch-end log value as ``epoch_<name>`` under ``log_dir``."""

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        with self._writer.as_default():
            for name, value in (logs or {}).items():
                tf.summary.write(
                    f"epoch_{name}", tf.constant(float(value), tf.float32), step=epoch, metadata=_SCALAR_METADATA
                )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
