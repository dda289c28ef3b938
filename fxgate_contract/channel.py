"""One gRPC channel setup for everything that calls the daemon (clients, `fxgate status`).

A unix socket gets a plain channel (its file mode decides who may connect;
check it first with socket_trust.check_socket); a TCP address gets TLS and
the daemon's token. The channel reconnects quickly: gRPC's default backoff
grows to two minutes, far too slow for a daemon restart.
"""

from __future__ import annotations

import grpc

from fxgate_contract.address import unix_path
from fxgate_contract.credentials import tcp_credentials
from fxgate_contract.limits import MAX_MESSAGE

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Each Client or Executor keeps its own connection: grpc otherwise shares one per
    # target in the process, and a new Client made just after a daemon restart inherits
    # the reconnect backoff of an older one that failed through the outage.
    ("grpc.use_local_subchannel_pool", 1),
]


def open_channel(address: str) -> grpc.Channel:
    """A plain channel to a unix socket; to a TCP address, TLS with the daemon's token."""
    if unix_path(address) is not None:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(address, tcp_credentials(address), options=CHANNEL_OPTIONS)
