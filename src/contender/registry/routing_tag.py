"""The registered model's tag `contender.routing`: one routing for every process (SPEC 2).

The tag holds JSON `{"challenger_weight": w, "testing": bool, "revision": n}`. Every
worker and replica reads it at each poll; `PUT /admin/routing` and `contender route`
write it with the revision one higher than the one they read.
"""

from __future__ import annotations

import orjson

from contender.routing.table import Routing

ROUTING_TAG = "contender.routing"
_FIELDS = {"challenger_weight", "testing", "revision"}


class InvalidRouting(ValueError):
    """A routing change or tag that is not `{"challenger_weight": w, "testing": b, ...}`."""


def check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise InvalidRouting(f"challenger_weight must be a number between 0 and 1, not {weight!r}")
    return float(weight)


def check_testing(testing: object) -> bool:
    if not isinstance(testing, bool):
        raise InvalidRouting(f"testing must be true or false, not {testing!r}")
    return testing


def parse_tag(text: str) -> Routing:
    """The routing a tag value holds; `InvalidRouting` names what is wrong with it."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise InvalidRouting(f"tag {ROUTING_TAG} is not JSON: {error}") from error
    if not isinstance(document, dict) or document.keys() != _FIELDS:
        raise InvalidRouting(
            f'tag {ROUTING_TAG} must be {{"challenger_weight": w, "testing": b, "revision": n}}, '
            f"not {text[:200]!r}"
        )
    revision = document["revision"]
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise InvalidRouting(f"tag {ROUTING_TAG}: revision must be a whole number >= 0")
    return Routing(
        check_weight(document["challenger_weight"]), check_testing(document["testing"]), revision
    )


def tag_value(routing: Routing) -> str:
    return orjson.dumps(
        {
            "challenger_weight": routing.challenger_weight,
            "testing": routing.testing,
            "revision": routing.revision,
        }
    ).decode()


def next_routing(base: Routing, challenger_weight: float | None, testing: bool | None) -> Routing:
    """`base` with the given fields changed, one revision later (the first tag: 1)."""
    return Routing(
        base.challenger_weight if challenger_weight is None else challenger_weight,
        base.testing if testing is None else testing,
        (base.revision or 0) + 1,
    )
