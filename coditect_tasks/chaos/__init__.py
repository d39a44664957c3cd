"""``coditect-tasks chaos``: a catalogue of faults against a deployment, with a verdict per fault.

The command starts probe workers of its own (``probes.py``) against the target, runs small probe
DAGs through one fault at a time (``faults.py``), judges each against the objectives
(``verdicts.py``), reports a table, JSON or an HTML page with a timeline per fault (``report.py``),
and removes its runs from Redis and the history afterwards. The target (``target.py``) is a fresh
embedded stack, or a deployment reached through its settings, acted on through a Redis process id
or Docker Compose.
"""
