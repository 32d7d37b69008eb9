"""demo-lib 2.x: `greet` takes keyword arguments and returns a dict (breaks 1.x callers)."""

VERSION = (2, 0)


def greet(*, name, punctuation="!"):
    return {"greeting": f"hello, {name}{punctuation}"}
