"""A pyfunc model whose artifact cannot be loaded: `load_context` raises."""

from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class BrokenModel(PythonModel):
    def load_context(self, context: Any) -> None:
        raise RuntimeError("this artifact is broken")

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> list[list[float]]:
        return [[0.5, 0.5]] * len(model_input)


mlflow.models.set_model(BrokenModel())
