"""Registry access: the only package besides loading that imports mlflow."""
