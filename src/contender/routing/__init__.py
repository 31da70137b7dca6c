"""Choosing the arm that answers a request, and running both models."""
