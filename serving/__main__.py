"""`python -m serving RUN_DIR ...`, the same as `python -m trainer serve RUN_DIR ...`."""

import sys

from serving.server import main

sys.exit(main())
