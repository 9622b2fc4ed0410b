"""Reading values out of a Prometheus text exposition (`GET /metrics`) in tests."""

from __future__ import annotations


def _matches(text: str, name: str, labels: dict[str, str]) -> list[float]:
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
        and all(f'{k}="{v}"' in line for k, v in labels.items())
    ]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The first series of `name` with these labels (others may vary); None if none."""
    found = _matches(text, name, labels)
    return found[0] if found else None


def total(text: str, name: str, **labels: str) -> float:
    """The sum over every series of `name` with these labels; 0 if none."""
    return sum(_matches(text, name, labels))


def exposition_problems(text: str) -> list[str]:
    """What is wrong with an exposition: `promtool check metrics`' errors (not its lint
    advice), and series exposed twice (which promtool 2.42 does not see)."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed (Debian package prometheus)")
    run = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=60)
    problems = [
        line for line in (run.stdout + run.stderr).decode().splitlines()
        if "error" in line.lower()
    ]
    seen: set[str] = set()
    for line in text.split("\n"):  # only "\n" ends a line (not what splitlines() splits on)
        if line and not line.startswith("#"):
            series = line.rsplit(" ", 1)[0]
            if series in seen:
                problems.append(f"exposed twice: {series}")
            seen.add(series)
    return problems
