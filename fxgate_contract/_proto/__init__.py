"""Generated gRPC stubs for proto/fxgate/v1/gateway.proto (python tools/gen_proto.py)."""
