"""Helpers shared by the model tests (a uniquely named module: several test folders have a conftest)."""

from __future__ import annotations

import argparse

CI_INPUT_SIZE = 64  # px: the session's CI-sized model
CI_IMAGES = 600  # synthetic images (~180 real patients' label histories) in the session's data set
CI_IMAGES_PER_PATIENT = 4  # at most this many consecutive follow-ups of each sampled patient
CI_MIN_PREVALENCE = 0.06  # rare findings enriched (whole real patients added) so every split has positives


def run_model_cli(argv: list[str]) -> int:
    """Parse and run ``modeldeploy <argv>`` with only the model command group registered."""
    from xraymodel.cli import register

    parser = argparse.ArgumentParser(prog="modeldeploy")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def pydicom_data_file(name: str) -> str:
    """Path of one pydicom-data file (the root 'test' extra installs it), or a skip that says how to get it."""
    import pytest
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is in pydicom-data (the root 'test' extra: pip install -c constraints.txt '.[test]')")
    return path
