"""demo-lib 1.x: `greet(name)` returns a string."""

VERSION = (1, 0)


def greet(name):
    return f"hello, {name}"
