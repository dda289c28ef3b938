"""fxgate test suite."""
