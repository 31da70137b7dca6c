"""A pyfunc model that takes 20 ms a call, whatever the rows: a costly challenger.

It sleeps rather than computes, so the test's load, not this model, fills the CPU."""

import time
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class CostlyModel(PythonModel):
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> list[list[float]]:
        time.sleep(0.02)
        return [[0.5, 0.5]] * len(model_input)


mlflow.models.set_model(CostlyModel())
