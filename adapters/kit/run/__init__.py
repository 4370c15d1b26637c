"""Admitted operations run in the background: admission, runner, journal, events, metrics."""
