"""Small stand-ins shared by the tests."""


def killed_on_call(real, n):
    """`real` wrapped to raise KeyboardInterrupt on its n-th call (the user's Ctrl-C, or a killed job, in the middle of
    a run); the calls before it go through."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper
