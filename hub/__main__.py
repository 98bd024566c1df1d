"""Run the `hub` command as `python -m hub`."""

from hub.cli import main

main()
