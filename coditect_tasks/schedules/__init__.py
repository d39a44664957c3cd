"""Schedules: DAG runs started at cron or interval fire times by any number of schedulers."""

from .spec import OVERLAPS, Schedule, parse_duration

__all__ = ["OVERLAPS", "Schedule", "parse_duration"]
