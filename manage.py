#!/usr/bin/env python
"""Django's command-line utility for the hub (the same as the `hub` command)."""

from hub.cli import main

if __name__ == "__main__":
    main()
