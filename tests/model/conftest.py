"""Fixtures for the model tool chain tests: one synthetic data set and one trained run per session.

KERAS_HOME points at a temporary folder before anything imports Keras (it writes ~/.keras on
import). The trained run is small (64 px, 600 synthetic images rendered for real ChestX-ray14 patients'
label histories, see xraymodel/synthetic.py) and shared by every TF test; it is produced by an
interrupted-then-resumed training, so resuming is exercised for free.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="keras-home-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from model_cli_runner import CI_IMAGES, CI_IMAGES_PER_PATIENT, CI_INPUT_SIZE, CI_MIN_PREVALENCE, run_model_cli  # noqa: E402


def _require_tensorflow():
    return pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")


@pytest.fixture(scope="session")
def nih_label_rows():
    """Rows of the real ChestX-ray14 label file (scripts/setup.sh fetches it), or a skip saying how to get it."""
    from xraymodel.nih_labels import LabelFileError, read_label_rows

    try:
        return read_label_rows()
    except LabelFileError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory, nih_label_rows):
    """ChestX-ray14-layout synthetic data: 600 images (96 px) of ~180 real patients' label histories."""
    from xraymodel.synthetic import write_chestxray14_layout

    return write_chestxray14_layout(
        tmp_path_factory.mktemp("cxr14") / "data", CI_IMAGES, size=96, seed=7, source=nih_label_rows,
        min_prevalence=CI_MIN_PREVALENCE, images_per_patient=CI_IMAGES_PER_PATIENT,
    )


class _InterruptAtFinetune:
    """Keras callback factory: raise KeyboardInterrupt when the fine-tune phase starts (once)."""

    def __new__(cls):
        import keras

        class Interrupt(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                raise KeyboardInterrupt("simulated interruption at the start of fine-tuning")

        return Interrupt()


@pytest.fixture(scope="session")
def ci_training_config(synthetic_root, tmp_path_factory):
    from xraymodel.training import TrainingConfig

    return TrainingConfig(
        data_dir=str(synthetic_root),
        out_dir=str(tmp_path_factory.mktemp("runs") / "run1"),
        input_size=CI_INPUT_SIZE,
        batch_size=16,
        head_epochs=100,
        finetune_epochs=1,
        steps_per_epoch=2,
        val_fraction=0.15,
        test_fraction=0.2,
        seed=3,
        verbose=0,
    )


@pytest.fixture(scope="session")
def trained_run(ci_training_config):
    """(run directory, facts about the interruption) of the session's CI-sized training."""
    _require_tensorflow()
    import json

    from xraymodel.training import STATE_FILE, incomplete_dir, train

    with pytest.raises(KeyboardInterrupt):
        train(ci_training_config, finetune_callbacks=[_InterruptAtFinetune()])
    staging = incomplete_dir(ci_training_config.out_dir)
    state_after_interrupt = json.loads((staging / STATE_FILE).read_text())
    run_dir = train(ci_training_config, resume=True)
    return run_dir, {"state_after_interrupt": state_after_interrupt, "staging": staging}


@pytest.fixture(scope="session")
def test_evaluation(trained_run, tmp_path_factory):
    """metrics.json of the run's held-out test split, via the CLI."""
    import json

    run_dir, _ = trained_run
    out = tmp_path_factory.mktemp("eval") / "test-eval"
    assert run_model_cli(["model", "evaluate", "--model", str(run_dir), "--out", str(out), "--bootstrap", "500"]) == 0
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="session")
def exported_version(trained_run, test_evaluation, tmp_path_factory):
    """BASE/1 exported through the CLI with the test metrics in its model card."""
    run_dir, _ = trained_run
    base = tmp_path_factory.mktemp("serving") / "chestxray"
    eval_dir, _ = test_evaluation
    assert run_model_cli(["model", "export", "--model", str(run_dir), "--base", str(base), "--metrics", str(eval_dir)]) == 0
    return base / "1"
