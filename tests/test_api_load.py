"""A short concurrent load on the live service: clients submitting and polling at once get no 5xx,
and every experiment finishes with exactly the completions it asked for."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.helpers import sweep
from tests.live_service import LiveService

CLIENTS = 8
SUBMITS_PER_CLIENT = 12
SMALL = sweep(prompts=["What is 3 plus 4?", "Name a colour."], alphas=[0, 2], samples_per_prompt=2, max_new_tokens=4,
              chunk_size=4)
ROWS = 2 * 2 * 2


def _client(url: str) -> tuple[Counter, list[str]]:
    """Submit, poll what was submitted, list: the statuses seen and the experiments created."""
    statuses: Counter = Counter()
    created: list[str] = []
    with requests.Session() as session:
        for _ in range(SUBMITS_PER_CLIENT):
            response = session.post(f"{url}/api/v1/experiments", json=SMALL, timeout=60)
            statuses[response.status_code] += 1
            if response.status_code == 201:
                created.append(response.json()["id"])
            for experiment_id in created[-3:]:
                statuses[session.get(f"{url}/api/v1/experiments/{experiment_id}", timeout=60).status_code] += 1
            statuses[session.get(f"{url}/api/v1/experiments", params={"limit": 20}, timeout=60).status_code] += 1
    return statuses, created


def test_concurrent_clients_get_no_5xx_and_exact_counts(service: LiveService):
    service.start_worker()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(_client, [service.url] * CLIENTS))

    statuses = sum((seen for seen, _ in results), Counter())
    created = [experiment_id for _, ids in results for experiment_id in ids]
    assert set(statuses) == {200, 201}, statuses
    assert len(created) == len(set(created)) == CLIENTS * SUBMITS_PER_CLIENT
    for experiment_id in created:
        finished = service.wait_finished(experiment_id)
        assert finished["status"] == "succeeded"
        assert finished["progress"]["completions_done"] == ROWS == sum(item["n"] for item in finished["summary"])
        assert service.completion_count(experiment_id) == ROWS  # stored once each: the ledger's unique key holds
