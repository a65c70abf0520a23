"""``python -m facetrack``."""

import sys

from facetrack.cli import main

sys.exit(main())
