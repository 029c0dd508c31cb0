"""A small REST client for the ldaq API, used by the client commands and the demo."""

from __future__ import annotations

import time
from collections.abc import Iterator

import requests

from ldaq.statuses import FINISHED_EXPERIMENT


class ApiError(RuntimeError):
    """The API answered with an error, or could not be reached; the message says which."""


class ApiClient:
    def __init__(self, url: str, token: str = "", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.http.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise ApiError(f"cannot reach the API at {self.url}: {error}") from error
        if response.status_code >= 400:
            raise ApiError(_error_message(response))
        return response

    def submit(self, experiment: dict) -> dict:
        return self._request("POST", "/api/v1/experiments", json=experiment).json()

    def experiment(self, experiment_id: str, estimates: bool = True) -> dict:
        params = {} if estimates else {"estimates": "false"}
        return self._request("GET", f"/api/v1/experiments/{experiment_id}", params=params).json()

    def ready(self) -> bool:
        try:
            return self.http.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def export(self, experiment_id: str, export_format: str) -> Iterator[bytes]:
        response = self._request(
            "GET", f"/api/v1/experiments/{experiment_id}/export", params={"format": export_format}, stream=True
        )
        yield from response.iter_content(chunk_size=65536)

    def poll(self, experiment_id: str, interval: float = 1.0) -> Iterator[dict]:
        """Yield the experiment every `interval` seconds until it has finished, then its whole last state.

        While it runs, without the alpha-0 estimates: each would be fitted anew for every poll, on the
        machine that may also be generating.
        """
        while True:
            experiment = self.experiment(experiment_id, estimates=False)
            if experiment["status"] in FINISHED_EXPERIMENT:
                yield self.experiment(experiment_id)
                return
            yield experiment
            time.sleep(interval)


def _error_message(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:500]}"
