"""A pyfunc model that answers 0.5/0.5 for every row: its logged requirements are the test."""

from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class ConstantModel(PythonModel):
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> list[list[float]]:
        return [[0.5, 0.5]] * len(model_input)


mlflow.models.set_model(ConstantModel())
