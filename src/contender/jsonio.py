"""JSON out, one way everywhere: answers, log records and hashed input cells.

orjson keeps floats exact (shortest round-trip form), writes NaN as null and is several
times faster than `json.dumps`; numpy scalars and timestamps are converted here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import orjson


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):  # pandas Timestamps included
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
