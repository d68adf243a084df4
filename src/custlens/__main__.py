"""`python -m custlens` runs the CLI."""

from custlens.cli import main

main()
