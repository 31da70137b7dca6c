"""Before measuring: does the server answer what the champion itself computes?

Each check request's predictions are compared with the fitted champion's own
`predict_proba` on the same rows, computed in this process (tolerance 1e-6).
A wrong shape, a non-2xx answer or a value off by more than the tolerance is a
mismatch; mismatches are counted in the results and printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx2
import numpy as np
import pandas as pd

from harness.models import Registered, reference_proba
from harness.servers import Target, parse_predictions, request_body

TOLERANCE = 1e-6
CHECK_SIZES = (1, 1, 3, 17, 100)


@dataclass
class AnswerCheck:
    requests: int = 0
    mismatches: int = 0
    messages: list[str] = field(default_factory=list)


def check_answers(base_url: str, target: Target, registered: Registered) -> AnswerCheck:
    result = AnswerCheck()
    start = 0
    with httpx2.Client(base_url=base_url, timeout=30.0) as client:
        for size in CHECK_SIZES:
            rows = registered.sample.iloc[start : start + size].reset_index(drop=True)
            start += size
            result.requests += 1
            problem = _check_one(client, target, registered, rows)
            if problem:
                result.mismatches += 1
                result.messages.append(f"{target.name}, {size} row(s): {problem}")
    return result


def _check_one(
    client: httpx2.Client, target: Target, registered: Registered, rows: pd.DataFrame
) -> str | None:
    try:
        response = client.post(
            target.path,
            content=request_body(target.protocol, rows),
            headers={"Content-Type": "application/json"},
        )
    except httpx2.HTTPError as exc:
        return f"request failed: {exc!r}"
    if not response.is_success:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    try:
        got = parse_predictions(target.protocol, response.json())
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return f"unreadable answer ({exc!r}): {response.text[:300]}"
    expected = reference_proba(registered, rows)
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    worst = float(np.max(np.abs(got - expected)))
    if worst > TOLERANCE:
        return f"max |difference| {worst:.3g} > {TOLERANCE}"
    return None
