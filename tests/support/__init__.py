"""Test infrastructure with real parts: a private RabbitMQ node and a fake Globus Compute service."""
