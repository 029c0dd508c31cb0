"""The `ldaq` command line."""
