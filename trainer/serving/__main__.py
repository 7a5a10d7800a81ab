"""`python -m trainer.serving RUN_DIR ...`, the same as `python -m trainer serve RUN_DIR ...`."""

import sys

from trainer.serving.server import main

sys.exit(main())
