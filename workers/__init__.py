"""Runnable agent pools and the example agents (``workers.examples``)."""
