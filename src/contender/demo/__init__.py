"""`contender demo`: the champion/challenger story end to end on an embedded default.

`workspace` owns the demo folder, `models` trains and registers the two models (the
demo's own MLflow calls; the service never imports this package), `service` runs
`contender serve` as a subprocess, `traffic` drives it over HTTP, `story` tells it.
"""
