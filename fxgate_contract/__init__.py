"""What the fxgate daemon and its clients agree on, in one small package both import.

The daemon (`gateway`) and the client library (`client`) never import each
other: everything they must share lives here, so it is written once. Its
modules and who loads them:

- `_proto`: the generated gRPC stubs of proto/fxgate/v1/gateway.proto (both).
- `address`: where the daemon listens, the default socket path (both).
- `socket_trust`: who may own the socket a client talks to (both).
- `credentials`, `channel`: how a client reaches a daemon over a unix socket or TCP.
- `framing`, `strategies`: the Globus Compute buffer framing and strategy ids,
  without dill, so the daemon checks a payload's shape without loading it.
- `serialize`: dill-based (de)serialization; clients and workers only, never the daemon.
- `states`, `limits`, `status`, `errors`: task states, shared limits, the
  status document, and the exceptions both sides raise.
- `shell`, `sdk_shim`: ShellFunction, MPIFunction and ShellResult as the SDK has
  them, and their stand-in SDK modules; clients and workers only, never the daemon.

Importing this package loads nothing: each module pulls in only what it needs.
"""
