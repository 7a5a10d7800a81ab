import sys

# Absolute import: Spark's TorchDistributor runs this file as a script.
from trainer.cli import main

sys.exit(main())
