"""The `fxgate` commands that look at your work: groups, tasks, result, watch, cancel, release, gc.

They are clients of the daemon, like a script: they talk to it over gRPC
through the client library and load results with fxgate_contract.serialize
(dill) in their own process. So they live apart from the daemon's package,
which never imports them (or dill); gateway/cli.py parses their arguments and
imports a command's module only when that command runs.
"""
