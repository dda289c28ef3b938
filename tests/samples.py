"""Functions the serialization tests pickle at import time.

They live in their own module because dill pickles a function by reference
only once its module is fully imported; a test module's own functions are not
yet reachable while its parametrize lists are being built.
"""


def add(a: int, b: int, c: int = 0) -> int:
    return a + b + c
