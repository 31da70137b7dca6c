"""Offline comparison of champion and challenger: pure functions over records."""
