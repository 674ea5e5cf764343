"""`python -m edge_medsam` runs the CLI."""

import sys

from edge_medsam.cli import main

sys.exit(main())
