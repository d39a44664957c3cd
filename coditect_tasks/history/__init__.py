"""Durable run history: SQLAlchemy models, the store that reads them, and the
recorder that fills them from the transition stream off the hot path."""
