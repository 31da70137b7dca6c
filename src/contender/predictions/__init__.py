"""The prediction log: records, stores and the background writer."""
