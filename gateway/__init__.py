"""fxgate's daemon: one durable gateway between many client scripts and the upstreams."""

__version__ = "0.1.0"
