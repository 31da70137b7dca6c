"""A pyfunc model (MLflow "models from code") whose every prediction raises."""

from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class RaisingModel(PythonModel):
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> list[list[float]]:
        raise RuntimeError("this challenger always fails")


mlflow.models.set_model(RaisingModel())
