"""Run the gitml command line as `python -m gitml`."""

from gitml.cli import main

main()
