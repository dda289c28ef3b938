"""ShellFunction, MPIFunction and ShellResult for fxgate's client, as the SDK names them.

Why here: a script written for the SDK (``from globus_compute_sdk import
ShellFunction``) moves over by changing its import line, and needs no SDK. The
objects pickle as the SDK's own classes, so a real Globus endpoint (SDK only) and a
local worker (SDK or not) both run them. Importing this module also lets this
process load the ShellResults that come back when the SDK is not installed here
(fxgate_contract.sdk_shim; an installed SDK is always used instead).
"""

from __future__ import annotations

from fxgate_contract import sdk_shim
from fxgate_contract.shell import MPIFunction, ShellFunction, ShellResult

sdk_shim.install()

__all__ = ["MPIFunction", "ShellFunction", "ShellResult"]
