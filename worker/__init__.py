"""The GPU worker: Celery tasks that run chunks through lda_core and write the results to the ledger."""
