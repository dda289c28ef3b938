"""A Python environment like the test venv but without globus-compute-sdk, for local workers.

A daemon's workers must run shell and MPI functions with no SDK installed. Rather
than a second virtualenv (minutes to build), a worker is given a PYTHONPATH whose
sitecustomize swaps the venv's site-packages on sys.path for a directory of symlinks
to every entry in it except the SDK and the endpoint (which needs the SDK): for that
interpreter the SDK is simply not installed.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

HIDDEN = ("globus_compute_sdk", "globus_compute_endpoint")

_SITECUSTOMIZE = """\
import sys
sys.path[:] = [{view!r} if p == {site!r} else p for p in sys.path]
sys.path_importer_cache.pop({site!r}, None)
"""


def build(where: Path) -> Path:
    """Make the view and its sitecustomize under ``where``; returns the dir for PYTHONPATH."""
    site = Path(sysconfig.get_paths()["purelib"])
    view = where / "site-packages"
    view.mkdir(parents=True)
    for entry in site.iterdir():
        if not entry.name.startswith(HIDDEN):
            (view / entry.name).symlink_to(entry)
    boot = where / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(view=str(view), site=str(site)))
    return boot
