"""contender: champion/challenger serving for models in the MLflow Model Registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["compare"]

if TYPE_CHECKING:
    from contender.comparison import compare


def __getattr__(name: str) -> Any:
    # `from contender import compare` without every `contender` command paying for the
    # analysis imports at start-up.
    if name == "compare":
        from contender.comparison import compare

        return compare
    raise AttributeError(f"module 'contender' has no attribute {name!r}")
