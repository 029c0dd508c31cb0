"""The `ldaq` command line: the top layer, which starts the API and the worker and calls the rest.

Nothing imports it; it may import every other package (`api`, `worker`, `ldaq`, `lda_core`).
"""
