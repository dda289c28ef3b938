"""Test infrastructure with real parts: a private RabbitMQ node, a fake Globus Compute service."""
