"""A pyfunc model that answers after two seconds: longer than any test's timeout."""

import time
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class SlowModel(PythonModel):
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> list[list[float]]:
        time.sleep(2.0)
        return [[0.5, 0.5]] * len(model_input)


mlflow.models.set_model(SlowModel())
