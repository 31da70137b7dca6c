"""contender: champion/challenger serving for models in the MLflow Model Registry."""

__version__ = "0.1.0"
