"""The demo's clients: scoring traffic, ground truth, and what the log says about both.

Every request carries one held-out row, as an online client would send it. Answers
are kept with the row they scored so the labels can follow through `/feedback`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2 as httpx
import numpy as np
import pandas as pd

from contender.predictions.store import SqlPredictionStore

FEEDBACK_BATCH = 200


@dataclass(frozen=True)
class Answer:
    """One `/invocations` call: `status` 0 when no HTTP answer came back."""

    row: int
    status: int
    request_id: str | None = None
    served_by: str | None = None
    version: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def new_client() -> httpx.Client:
    # trust_env=False: a proxy configured for the outside world must not see localhost.
    return httpx.Client(trust_env=False, timeout=30.0)


def score_row(client: httpx.Client, url: str, rows: pd.DataFrame, row: int) -> Answer:
    body = {"dataframe_split": {"columns": list(rows.columns), "data": [rows.iloc[row].tolist()]}}
    try:
        response = client.post(f"{url}/invocations", json=body)
    except httpx.HTTPError as error:
        return Answer(row, 0, error=f"{type(error).__name__}: {error}")
    if response.status_code != 200:
        return Answer(row, response.status_code, error=response.text[:300])
    document = response.json()
    return Answer(
        row,
        200,
        request_id=document["request_id"],
        served_by=document["served_by"],
        version=str(document["model_version"]),
    )


def send_traffic(
    client: httpx.Client, url: str, rows: pd.DataFrame, advance: Callable[[], None]
) -> list[Answer]:
    """One request per row, one at a time; `advance` after each answer.

    One at a time on purpose: the report's p99 latency guardrail compares the two models'
    slowest requests, and concurrent clients stack the background model's work on top
    of the next requests' (the demo measured that as noise, not as either model's cost).
    """
    answers = []
    for row in range(len(rows)):
        answers.append(score_row(client, url, rows, row))
        advance()
    return answers


def send_feedback(client: httpx.Client, url: str, answers: list[Answer], labels: np.ndarray) -> int:
    """The true label of each answered row, in batches; returns how many were accepted."""
    items = [
        {"request_id": answer.request_id, "label": int(labels[answer.row])}
        for answer in answers
        if answer.ok
    ]
    accepted = 0
    for start in range(0, len(items), FEEDBACK_BATCH):
        response = client.post(f"{url}/feedback", json=items[start : start + FEEDBACK_BATCH])
        response.raise_for_status()
        accepted += int(response.json()["accepted"])
    return accepted


@dataclass(frozen=True)
class LogSummary:
    n_records: int
    n_labeled: int
    served: Counter[tuple[str, str]]
    """(served_by, version) -> records."""
    n_fallbacks: int
    n_champion_errors: int


def read_log(log_store: str) -> LogSummary:
    store = SqlPredictionStore(log_store)
    try:
        labels = store.labels()
        records = list(store.iter_records())
    finally:
        store.close()
    served: Counter[tuple[str, str]] = Counter()
    for record in records:
        arm = str(record["served_by"])
        served[arm, str(record[f"{arm}_version"])] += 1
    return LogSummary(
        n_records=len(records),
        n_labeled=sum((record["request_id"], 0) in labels for record in records),
        served=served,
        n_fallbacks=sum(bool(record["fallback"]) for record in records),
        n_champion_errors=sum(record["champion_error"] is not None for record in records),
    )


def wait_for_log(log_store: str, n_records: int, timeout_s: float) -> LogSummary:
    """The log once it holds `n_records` (records land within ~2 s of their answers)."""
    deadline = time.monotonic() + timeout_s
    summary = read_log(log_store)
    while summary.n_records < n_records and time.monotonic() < deadline:
        time.sleep(0.25)
        summary = read_log(log_store)
    return summary


@dataclass
class BackgroundTraffic:
    """Requests one after another in a thread, until `stop`: the client's view of a swap."""

    client: httpx.Client
    url: str
    rows: pd.DataFrame
    pause_s: float = 0.02
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-switch-traffic")

    def __enter__(self) -> BackgroundTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        row = 0
        while not self._stopping.is_set():
            self.answers.append(score_row(self.client, self.url, self.rows, row % len(self.rows)))
            row += 1
            self._stopping.wait(self.pause_s)

    def stop(self) -> list[Answer]:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.answers
