"""Run the browser demo from a checkout: ``python apps/demo.py --bundle bundle/`` is ``edge-medsam demo``.

The demo itself lives in the package (``edge_medsam/apps/demo``), so that ``pip install "edge-medsam[demo]"``
installs it; this launcher only forwards the command line.
"""

import sys

from edge_medsam.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
