"""The one exception a task retries on; Celery's own options (worker/tasks.py) set the backoff."""


class RetryLater(Exception):
    """The chunk failed but has attempts left: ring again after a backoff."""
