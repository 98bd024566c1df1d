"""`python -m bench.ingest`, what `make bench` runs: see bench/run.py and bench/README.md."""

from __future__ import annotations

import sys

from bench.run import main

if __name__ == "__main__":
    sys.exit(main())
