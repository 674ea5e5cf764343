"""``python -m benchmarks ...`` is ``edge-medsam bench ...``."""

import sys

from edge_medsam.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
