"""The one exception type for bad user input: it always names the file (and row) at fault.

Commands catch InputDataError, print its message and exit with status 2 before anything has been
written (outputs are staged in a temporary directory and renamed only on success).
"""

from __future__ import annotations


class InputDataError(ValueError):
    """Unusable input data: corrupt or non-image bytes, a wrong DICOM, a malformed CSV, unknown labels."""
