"""A costly challenger that holds the GIL: an MLflow "model from code".

`mlflow.pyfunc.log_model(python_model=<this file>, model_config={...})` stores this file
as the model; loading it runs the file, and `set_model` below names the model. Each
`predict` call first runs `spin_iterations` turns of a pure-Python loop (the bench
calibrates the count to about 3 ms on the machine it runs on), holding the GIL the whole
time as a pure-Python model would; `time.sleep` would release it and cost nothing. It
then answers, per row, the logistic of a fixed linear combination of the inputs as
`[1 - p, p]`: the same (n, 2) shape as the champion's `predict_proba`.

The file imports only numpy and mlflow: it runs inside the server under test. Run as a
script, it prints the ns one loop turn costs in a fresh interpreter (the calibration).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


def spin(iterations: int) -> int:
    """Pure-Python work that never releases the GIL (beyond the interpreter's switches)."""
    total = 0
    for i in range(iterations):
        total += i
    return total


class GilHoldingModel(PythonModel):
    def load_context(self, context: Any) -> None:
        config = context.model_config
        self._iterations = int(config["spin_iterations"])
        self._columns = list(config["columns"])
        self._weights = np.asarray(config["weights"], dtype=float)
        self._intercept = float(config["intercept"])

    # No type hints here: MLflow would read them as the model's input schema.
    def predict(self, context, model_input, params=None):
        spin(self._iterations)
        rows = model_input[self._columns].to_numpy(dtype=float)
        positive = 1.0 / (1.0 + np.exp(-(rows @ self._weights + self._intercept)))
        return np.column_stack([1.0 - positive, positive])


def _ns_per_turn(probe: int = 100_000, runs: int = 9) -> float:
    """The fastest of `runs` timed probes: anything slower is another process's doing."""
    import time

    spin(probe)  # warm the interpreter
    fastest_s = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        spin(probe)
        fastest_s = min(fastest_s, time.perf_counter() - started)
    return fastest_s * 1e9 / probe


if __name__ == "__main__":
    print(_ns_per_turn())
else:
    mlflow.models.set_model(GilHoldingModel())
