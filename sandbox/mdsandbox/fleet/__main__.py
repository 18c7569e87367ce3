"""``python -m mdsandbox.fleet``: the standalone fleet (`mdsandbox.fleet.standalone`)."""

import sys

from mdsandbox.fleet.standalone import main

sys.exit(main())
