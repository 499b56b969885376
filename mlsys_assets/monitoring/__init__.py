"""Monitoring: Evidently reports, their history, the report index and the alerts built on them."""
