"""`python -m ldaq` is the `ldaq` command (the demo starts its children this way)."""

from ldaq.cli.main import cli

cli()
