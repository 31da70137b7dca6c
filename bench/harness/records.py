"""Realistic prediction records for the PostgreSQL benchmarks, built as the service builds
them: `inputs` a callable over the request's DataFrame that the log writer's thread
calls (`logged_inputs`: what `protocol.log_inputs` gives for unredacted float columns,
the columns and one C-ordered float64 array), predictions numpy arrays of class
probabilities `[p0, p1]` per row, both arms scored, latencies and a routing draw.

Building a DataFrame per record would make the generator slower than PostgreSQL, so
a `RecordFactory` builds a pool of distinct requests once and gives every record a new
request id and timestamp over them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pandas as pd

from contender.predictions.record import ArmOutcome, JsonValue, PredictionRecord

MODEL = "bench-model"
COLUMNS = [f"f{i}" for i in range(10)]
_POOL = 256


def logged_inputs(frame: pd.DataFrame) -> dict[str, JsonValue]:
    return {
        "columns": [str(column) for column in frame.columns],
        "data": np.ascontiguousarray(frame.to_numpy()),
    }


class RecordFactory:
    """Records of `rows` input rows x 10 float columns, as fast as the pool allows."""

    def __init__(self, rows: int, *, seed: int = 7, model: str = MODEL) -> None:
        rng = np.random.default_rng(seed)
        self._model = model
        self._pool = []
        for _ in range(_POOL):
            frame = pd.DataFrame(rng.normal(size=(rows, len(COLUMNS))), columns=COLUMNS)
            champion = rng.random(rows)
            challenger = np.clip(champion + rng.normal(0, 0.05, rows), 0, 1)
            self._pool.append(
                (
                    partial(logged_inputs, frame),
                    np.column_stack([1 - champion, champion]),
                    np.column_stack([1 - challenger, challenger]),
                    float(rng.lognormal(np.log(2.0), 0.3)),
                    float(rng.lognormal(np.log(2.5), 0.3)),
                    float(rng.random()),
                )
            )
        self._start = datetime(2026, 1, 1, tzinfo=UTC)
        self._count = 0

    def make(self, n: int) -> list[PredictionRecord]:
        records = []
        for _ in range(n):
            inputs, champion, challenger, champion_ms, challenger_ms, draw = self._pool[
                self._count % _POOL
            ]
            at = self._start + timedelta(microseconds=self._count)
            self._count += 1
            records.append(
                PredictionRecord(
                    request_id=uuid.uuid4().hex,
                    timestamp=at.isoformat(timespec="microseconds"),
                    model_name=self._model,
                    inputs=inputs,
                    served_by="champion",
                    fallback=False,
                    routing_draw=draw,
                    routing_key=None,
                    champion=ArmOutcome("3", champion, champion_ms),
                    challenger=ArmOutcome("4", challenger, challenger_ms),
                    challenger_weight=0.1,
                )
            )
        return records
