"""Cluster endpoints: Globus Compute's engine (Parsl's HTEX) in a supervised child process."""
