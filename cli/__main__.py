"""`python -m cli` is the `ldaq` command (the demo starts its children this way)."""

from cli.main import cli

cli()
