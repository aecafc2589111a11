"""An in-process kill of a training run at a chosen crash point, shared by tests/training/
(imported as ``interrupts``)."""

__all__ = ["Interrupt", "interrupt_at"]


class Interrupt(Exception):
    """Raised by :func:`interrupt_at` at the chosen crash point."""


def interrupt_at(monkeypatch, name: str, k: int):
    """Make the trainer raise at its k-th crash point ``name`` (an in-process stand-in for the
    SIGKILL of tests/training/test_crash_resume.py)."""
    from infodistill.training import trainer

    seen = {"n": 0}
    original = trainer.crash_point

    def point(where):
        original(where)
        if where == name:
            seen["n"] += 1
            if seen["n"] == k:
                raise Interrupt(where)

    monkeypatch.setattr(trainer, "crash_point", point)
    return lambda: monkeypatch.setattr(trainer, "crash_point", original)
