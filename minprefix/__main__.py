"""`python -m minprefix` is the `minprefix` command."""

from .cli import main

main()
