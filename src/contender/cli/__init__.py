"""The `contender` command line."""
