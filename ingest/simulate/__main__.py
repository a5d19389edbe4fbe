"""`python -m ingest.simulate`."""

import sys

from ingest.simulate.cli import main

sys.exit(main(sys.argv[1:]))
