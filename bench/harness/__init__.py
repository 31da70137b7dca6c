"""The pieces of `bench/run.py`: installs, fixtures, servers, load, checks, output."""
