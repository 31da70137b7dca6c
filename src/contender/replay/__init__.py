"""Replay: score logged inputs with a candidate version offline (`contender replay`).

`source` reads the records to replay from the store and writes the results beside them,
`scoring` turns a batch of logged inputs into the version's predictions, and `run` ties
them together with bounded memory, resuming where an earlier run stopped.
"""
