"""`python -m edge_medsam` runs the CLI."""

import sys

from edge_medsam.cli import main

if __name__ == "__main__":  # not when a spawned worker process imports the main module
    sys.exit(main())
