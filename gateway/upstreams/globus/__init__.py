"""The Globus Compute upstream: web.py (the HTTP client), results.py (the one broker
connection), task_ids.py (result -> task), upstream.py (the upstream built on them)."""
