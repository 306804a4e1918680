"""``python -m trader.cli``: the ``trader`` console script without the installed entry point."""

from trader.cli import main

main()
