"""Load testing with Locust: the plan's scenarios, a DAG-submitting user, reports."""
