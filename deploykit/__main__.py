"""``python -m deploykit`` runs the command-line interface."""

from deploykit.cli import main

main()
