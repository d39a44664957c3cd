"""Submitting runs, with no I/O: validate, resolve limits and order, and build the writes; the
clients perform the steps for a submit, and a worker for the child runs a node spawns."""
