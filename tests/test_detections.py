"""Re-detection: a new named detector over stored completions, run by the detection worker, read back
through every view that takes ?detector=NAME. Real API, real worker processes, real databases."""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter

import pytest

from ldaq.detections import run_detection
from ldaq.tables import Detection
from tests.helpers import assert_error, exported, sweep
from tests.live_service import LiveService

EXPERIMENTS = "/api/v1/experiments"
VOWEL_PAIRS = {"name": "vowel-pairs", "type": "regex", "patterns": ["[aeiou][aeiou]"], "case_sensitive": True}
DETECTOR_WORKER = [sys.executable, "-m", "cli", "detector", "--loglevel=INFO"]


def finished_experiment(service: LiveService, **overrides) -> dict:
    service.start_worker()
    experiment = service.submit(sweep(**overrides))
    return service.wait_finished(experiment["id"])


def wait_for_detection(service: LiveService, experiment_id: str, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = {item["name"]: item for item in service.get(f"{EXPERIMENTS}/{experiment_id}/detections").json()["items"]}
        if listed[name]["status"] in ("succeeded", "failed"):
            return listed[name]
        time.sleep(0.2)
    raise AssertionError(f"detection {name} did not finish: {listed[name]}\n{service.worker_logs()}")


def key(completion: dict) -> tuple:
    return completion["prompt_index"], completion["alpha"], completion["sample_index"]


def exported_under(service: LiveService, experiment_id: str, detector: str) -> list[dict]:
    response = service.get(f"{EXPERIMENTS}/{experiment_id}/export", params={"format": "jsonl", "detector": detector})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def expected_hits(completions: list[dict]) -> dict[tuple, str]:
    """What the new pattern finds, by Python's own re: the key of every completion it matches, and the match."""
    pattern = re.compile(VOWEL_PAIRS["patterns"][0])
    return {key(c): found.group(0) for c in completions if c["error"] is None and (found := pattern.search(c["text"]))}


def test_a_new_detector_runs_over_stored_completions_and_every_view_reads_it(service: LiveService) -> None:
    experiment = finished_experiment(service)
    url = f"{EXPERIMENTS}/{experiment['id']}"
    before = exported(service, experiment["id"])
    accepted = service.post(f"{url}/detections", VOWEL_PAIRS)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued" and accepted.headers["Location"].endswith(f"{url}/detections")
    service.start_worker(DETECTOR_WORKER)
    detection = wait_for_detection(service, experiment["id"], "vowel-pairs")


    assert detection["completions_scanned"] == detection["completions_total"] == len(before)
    assert_every_view_reads(service, experiment["id"], before, detection)


def test_a_detector_named_at_submit_counts_as_completions_arrive(service: LiveService) -> None:
    experiment = finished_experiment(service, detectors=[VOWEL_PAIRS])
    assert experiment["params"]["detectors"] == [VOWEL_PAIRS]
    listed = service.get(f"{EXPERIMENTS}/{experiment['id']}/detections").json()["items"]
    assert [(item["name"], item["status"]) for item in listed] == [("default", "succeeded"), ("vowel-pairs", "succeeded")]
    assert_every_view_reads(service, experiment["id"], exported(service, experiment["id"]), listed[1])
    again = service.post(f"{EXPERIMENTS}/{experiment['id']}/detections", VOWEL_PAIRS)
    assert_error(again, 409, "detector_exists")


def assert_every_view_reads(service: LiveService, experiment_id: str, before: list[dict], detection: dict) -> None:
    """Under ?detector=vowel-pairs, the summary, the completions, the export and the intervals say what Python's
    own re finds in the stored texts; the default detector's results are untouched."""
    url = f"{EXPERIMENTS}/{experiment_id}"
    hits = expected_hits(before)
    assert detection["activated"] == len(hits) and 0 < len(hits) < len(before)  # the pattern must discriminate
    summary = service.get(url, params={"detector": "vowel-pairs"}).json()
    n, activated = Counter(c["alpha"] for c in before), Counter(key[1] for key in hits)
    assert summary["detector"] == "vowel-pairs"
    assert [(row["alpha"], row["n"], row["activated"]) for row in summary["summary"]] == [
        (alpha, n[alpha], activated[alpha]) for alpha in sorted(n)
    ]
    page = service.get(f"{url}/completions", params={"detector": "vowel-pairs", "activated": "true", "limit": 500})
    assert {key(c): c["match"] for c in page.json()["items"]} == hits
    under_new = exported_under(service, experiment_id, "vowel-pairs")
    assert {key(c): (c["activated"], c["match"]) for c in under_new} == {key(c): (key(c) in hits, hits.get(key(c)))
                                                                        for c in before}
    intervals = service.get(f"{url}/intervals", params={"detector": "vowel-pairs"}).json()["intervals"]
    assert [(row["n"], row["activated"]) for row in intervals] == [(n[a], activated[a]) for a in sorted(n)]
    assert reweighted_cells(summary) == expected_reweighted(before, set(hits))
    default_hits = {key(c) for c in before if c["activated"]}
    assert reweighted_cells(service.get(url).json()) == expected_reweighted(before, default_hits)
    assert exported(service, experiment_id) == before


def reweighted_cells(experiment: dict) -> dict[float, tuple]:
    return {cell["alpha"]: (cell["n"], cell["activated"], pytest.approx(cell["rate"], rel=1e-9, abs=1e-12))
            for cell in experiment["alpha0_reweighted"]["by_alpha"]}


def expected_reweighted(completions: list[dict], hits: set[tuple]) -> dict[float, tuple]:
    """Per positive alpha: completions, hits, and the mean of hit * alpha0_weight, from the exported rows."""
    cells = {}
    for alpha in sorted({c["alpha"] for c in completions if c["alpha"] > 0}):
        rows = [c for c in completions if c["alpha"] == alpha and c["error"] is None]
        found = [c for c in rows if key(c) in hits]
        cells[alpha] = (len(rows), len(found), sum(c["alpha0_weight"] for c in found) / len(rows))
    return cells


def test_detectors_named_at_submit_are_validated_as_the_default_is(embedded_service: LiveService) -> None:
    def submitted(detectors: list[dict]):
        return embedded_service.post(EXPERIMENTS, sweep(detectors=detectors))

    assert_error(submitted([{**VOWEL_PAIRS, "name": "default"}]), 400, "invalid_detector_name")
    assert_error(submitted([VOWEL_PAIRS, VOWEL_PAIRS]), 400, "invalid_detector_name")
    assert_error(submitted([{**VOWEL_PAIRS, "patterns": ["(a"]}]), 400, "invalid_detector")
    assert_error(submitted([{key: v for key, v in VOWEL_PAIRS.items() if key != "name"}]), 400, "invalid_request")


def test_re_detection_is_refused_where_it_cannot_be_right(embedded_service: LiveService) -> None:
    running = embedded_service.submit(sweep())  # no worker: it stays queued
    detections = f"{EXPERIMENTS}/{running['id']}/detections"
    assert_error(embedded_service.post(detections, VOWEL_PAIRS), 409, "experiment_not_finished")
    kept_hits_only = embedded_service.submit(sweep(keep_text="activated"))
    embedded_service.post(f"{EXPERIMENTS}/{kept_hits_only['id']}/cancel", {})
    assert_error(embedded_service.post(f"{EXPERIMENTS}/{kept_hits_only['id']}/detections", VOWEL_PAIRS), 409,
                 "text_not_kept")

    embedded_service.post(f"{EXPERIMENTS}/{running['id']}/cancel", {})
    assert_error(embedded_service.post(detections, {**VOWEL_PAIRS, "name": "default"}), 409, "detector_exists")
    assert_error(embedded_service.post(detections, {**VOWEL_PAIRS, "patterns": ["(unclosed"]}), 400, "invalid_detector")
    assert_error(embedded_service.post(detections, {**VOWEL_PAIRS, "name": "no spaces"}), 400, "invalid_request")
    assert_error(embedded_service.post(f"{EXPERIMENTS}/nope/detections", VOWEL_PAIRS), 404, "not_found")
    assert embedded_service.post(detections, VOWEL_PAIRS).status_code == 202  # no detection worker: stays queued
    assert_error(embedded_service.post(detections, VOWEL_PAIRS), 409, "detector_exists")
    url = f"{EXPERIMENTS}/{running['id']}"
    assert_error(embedded_service.get(url, params={"detector": "vowel-pairs"}), 409, "detection_not_ready")
    assert_error(embedded_service.get(f"{url}/completions", params={"detector": "elsewhere"}), 404, "unknown_detector")
    assert_error(embedded_service.get(f"{url}/export", params={"detector": "elsewhere"}), 404, "unknown_detector")
    listed = embedded_service.get(detections).json()["items"]
    assert [(item["name"], item["status"]) for item in listed] == [("default", "succeeded"), ("vowel-pairs", "queued")]


def test_a_detection_delivered_twice_or_cut_short_counts_each_completion_once(embedded_service: LiveService) -> None:
    experiment = finished_experiment(embedded_service)
    assert embedded_service.post(f"{EXPERIMENTS}/{experiment['id']}/detections", VOWEL_PAIRS).status_code == 202
    run_detection(embedded_service.database, experiment["id"], "vowel-pairs")
    first = embedded_service.get(f"{EXPERIMENTS}/{experiment['id']}", params={"detector": "vowel-pairs"}).json()
    run_detection(embedded_service.database, experiment["id"], "vowel-pairs")  # the message delivered again
    with embedded_service.database.transaction() as session:  # a worker that died mid-scan left it running
        session.get(Detection, (experiment["id"], "vowel-pairs")).status = "running"
    run_detection(embedded_service.database, experiment["id"], "vowel-pairs")
    again = embedded_service.get(f"{EXPERIMENTS}/{experiment['id']}", params={"detector": "vowel-pairs"}).json()
    assert again["summary"] == first["summary"] and sum(row["n"] for row in first["summary"]) > 0


def test_a_detection_finishes_while_the_gpu_worker_is_busy_with_a_long_experiment(embedded_service) -> None:
    finished = finished_experiment(embedded_service)
    long_run = embedded_service.submit(sweep(samples_per_prompt=1000, max_new_tokens=64, stop_at_eos=False))
    embedded_service.wait_until(long_run["id"], lambda e: e["status"] == "running")
    embedded_service.post(f"{EXPERIMENTS}/{finished['id']}/detections", VOWEL_PAIRS)
    embedded_service.start_worker(DETECTOR_WORKER)
    assert wait_for_detection(embedded_service, finished["id"], "vowel-pairs")["status"] == "succeeded"
    busy = embedded_service.experiment(long_run["id"])
    assert busy["status"] == "running", busy["progress"]  # it did not wait for the queue of generation to drain
    embedded_service.post(f"{EXPERIMENTS}/{long_run['id']}/cancel", {})
