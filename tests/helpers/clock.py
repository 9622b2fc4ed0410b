"""A clock the test moves by hand: pass it where the code under test takes a `clock()`."""


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
