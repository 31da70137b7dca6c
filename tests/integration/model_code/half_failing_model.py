"""A pyfunc model whose every other call raises: a challenger failing 50 % of the time.

Alternating, not random, so that a window of predictions holds a known share of failures
(each process that loads it counts its own calls)."""

import itertools
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class HalfFailingModel(PythonModel):
    def __init__(self) -> None:
        self._calls = itertools.count()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> list[list[float]]:
        if next(self._calls) % 2:
            raise RuntimeError("this challenger fails every other call")
        return [[0.5, 0.5]] * len(model_input)


mlflow.models.set_model(HalfFailingModel())
