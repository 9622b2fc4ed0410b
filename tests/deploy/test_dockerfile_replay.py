"""The Dockerfile's install and start steps work, replayed outside Docker (issue 6, §8).

No Docker daemon runs here, so this test plays ``docker build`` and ``docker run`` from the
Dockerfile itself: it parses the stages (FROM, ENV, WORKDIR, COPY, RUN, USER, VOLUME,
HEALTHCHECK, STOPSIGNAL, CMD, ...), builds the context from the repository with
``.dockerignore``'s allow-list, and runs every RUN as written, in order, with each stage's
ENV, from its WORKDIR:

- each stage gets its own stand-in root directory; absolute paths the Dockerfile uses
  (``/build``, ``/wheels``, ``/opt/venv``, ``/etc/flext-observability``, ``/data``, ...)
  live under it, while the base image's system directories (``/usr``, ``/bin``, ...) are
  this machine's;
- the base image's ``python`` is this interpreter's base CPython (same minor version as the
  FROM tag), so the builder's ``pip wheel`` and the runtime's ``python -m venv`` and
  ``pip install`` run in a fresh virtual environment exactly as in the image, dependencies
  coming from the package index (this machine's pip configuration and PIP_*/proxy
  variables apply to RUN steps, as build args would);
- the steps that cannot run as an ordinary user are skipped with their reason
  (``SKIPPED_RUN``, ``USER``).

Then the image's CMD starts the collector on the shipped config, rewritten only where the
container and this machine differ (loopback host, free ports, the queue under the stand-in
root); the HEALTHCHECK command (its URL moved to the free port) must pass, and the
STOPSIGNAL must stop the collector with exit code 0, after which the health check fails.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml
from test_deploy_files import (
    COLLECTOR_DOCKER_CONFIG,
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    dockerignore_excludes,
)

from helpers.procs import free_port, http_get

# The base image's own directories: taken from this machine, never mapped...
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/proc", "/dev", "/sys")
# ...except where the python images keep their interpreter: a directory holding
# `python`/`python3` links to the stand-in interpreter.
BASE_PYTHON_DIR = "/usr/local/bin"
# The python images' environment.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}

# RUN instructions the replay cannot run, by their first word, with the reason.
SKIPPED_RUN = {
    "groupadd": (
        "creates the system user flext (uid 10001) and /data owned by it: needs root and "
        "would change this machine's users; the replay runs as the current user and "
        "creates /data (the VOLUME) in the stand-in root"
    ),
}
SKIPPED_USER = "the replay runs every step as the current user"

# Host variables RUN steps may see: how this machine reaches the package index, as
# `docker build --build-arg HTTP_PROXY=...` would pass them. Never given to the CMD.
BUILD_PASSTHROUGH = re.compile(
    r"PIP_[A-Z_]+|(?i:https?_proxy|no_proxy)|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE"
)
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "2>", "2>&1"}
STEP_TIMEOUT = 240  # one RUN (pip install of every dependency from the index)
STOP_TIMEOUT = 10  # `docker stop`'s default grace period


# --------------------------------------------------------------------------- parsing


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions; continuation lines joined, comment lines dropped."""
    stages: list[Stage] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
            continue
        assert stages, f"{keyword} before the first FROM"
        stages[-1].instructions.append(Instruction(keyword, args))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return stages


def parse_env(args: str, env: dict[str, str]) -> dict[str, str]:
    """``ENV K=V K2="V 2"`` (or the legacy ``ENV K V``), ``$VAR``/``${VAR}`` expanded
    against the environment before the instruction."""
    words = shlex.split(args)
    pairs = (
        [w.split("=", 1) for w in words] if "=" in words[0] else [[words[0], " ".join(words[1:])]]
    )
    expand = re.compile(r"\$\{(\w+)\}|\$(\w+)")
    return {
        key: expand.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)
        for key, value in pairs
    }


def parse_healthcheck(args: str) -> tuple[dict[str, str], list[str]]:
    """(options, exec-form command) of ``HEALTHCHECK [--opt=value ...] CMD [...]``."""
    options: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        name, _, value = option[2:].partition("=")
        options[name] = value
        rest = rest.lstrip()
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", f"HEALTHCHECK {args!r}: expected CMD"
    assert command.strip().startswith("["), "HEALTHCHECK CMD: use the exec (JSON) form"
    return options, json.loads(command)


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_parser_reads_the_dockerfile_shape():
    stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert [s.name for s in stages] == ["builder", "runtime"]
    env = parse_env('A=1 B="two words" PATH=/opt/venv/bin:$PATH', {"PATH": "/usr/bin"})
    assert env == {"A": "1", "B": "two words", "PATH": "/opt/venv/bin:/usr/bin"}
    options, command = parse_healthcheck('--interval=15s --timeout=5s CMD ["a", "b c"]')
    assert options == {"interval": "15s", "timeout": "5s"}
    assert command == ["a", "b c"]
    assert seconds("1m30s") == 90


# --------------------------------------------------------------------------- the context


def _negations() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip()[1:].strip("/") for line in lines if line.strip().startswith("!")]


def build_context(destination: Path) -> list[str]:
    """Copy the files of the repository that .dockerignore lets into the build context."""
    negations = _negations()

    def may_hold_included(directory: str) -> bool:
        return any(
            n.startswith(directory + "/") or fnmatch.fnmatch(directory, n) or "**" in n
            for n in negations
        )

    copied = []
    for root, dirs, files in os.walk(REPO):
        relative_root = Path(root).relative_to(REPO)
        for name in list(dirs):
            path = (relative_root / name).as_posix()
            if dockerignore_excludes(path) and not may_hold_included(path):
                dirs.remove(name)
        for name in files:
            path = (relative_root / name).as_posix()
            if not dockerignore_excludes(path):
                target = destination / path
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copy2(REPO / path, target)
                except FileNotFoundError:
                    continue  # removed since the walk listed it (an editor's temp file)
                copied.append(path)
    return sorted(copied)


# --------------------------------------------------------------------------- the replay


@dataclass
class StageState:
    root: Path  # the stand-in for the stage's filesystem root
    python_bin: Path  # the stand-in for BASE_PYTHON_DIR
    env: dict[str, str]
    workdir: str = "/"
    user: str | None = None
    healthcheck: tuple[dict[str, str], list[str]] | None = None
    stopsignal: str = "SIGTERM"
    cmd: list[str] | None = None
    volumes: list[str] = field(default_factory=list)

    def host(self, path: str) -> str:
        """A container path on this machine: under ``root`` unless a system directory."""
        if path == BASE_PYTHON_DIR or path.startswith(BASE_PYTHON_DIR + "/"):
            return str(self.python_bin) + path[len(BASE_PYTHON_DIR) :]
        if not path.startswith("/") or path.startswith((*SYSTEM_DIRS, str(self.root))):
            return path
        return str(self.root / path.lstrip("/"))

    def host_env(self) -> dict[str, str]:
        """The stage's environment with container paths mapped (``PATH``-like lists too)."""
        mapped = {}
        for key, value in self.env.items():
            parts = value.split(":")
            if all(p.startswith("/") for p in parts):
                value = ":".join(self.host(p) for p in parts)
            mapped[key] = value
        return mapped

    def resolve(self, path: str) -> str:
        """A COPY/WORKDIR destination, relative ones against the WORKDIR."""
        return str(PurePosixPath(self.workdir) / path) + ("/" if path.endswith("/") else "")


@dataclass
class Replay:
    tmp: Path
    context: Path
    python_bin: Path  # holds `python`: the base image's interpreter
    log: Path
    stages: dict[str, StageState] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def run_stage(self, index: int, stage: Stage) -> StageState:
        name = stage.name or str(index)
        state = StageState(self.tmp / "stages" / name, self.python_bin, dict(BASE_ENV))
        state.root.mkdir(parents=True)
        for instruction in stage.instructions:
            handler = getattr(self, f"_{instruction.keyword.lower()}", None)
            assert handler is not None, f"the replay does not know {instruction.keyword}"
            handler(state, instruction.args)
        self.stages[name] = state
        return state

    # ----- instructions

    def _env(self, state: StageState, args: str) -> None:
        state.env.update(parse_env(args, state.env))

    def _label(self, state: StageState, args: str) -> None:
        pass

    def _expose(self, state: StageState, args: str) -> None:
        pass

    def _workdir(self, state: StageState, args: str) -> None:
        state.workdir = state.resolve(args).rstrip("/") or "/"
        Path(state.host(state.workdir)).mkdir(parents=True, exist_ok=True)

    def _volume(self, state: StageState, args: str) -> None:
        paths = json.loads(args) if args.startswith("[") else args.split()
        for path in paths:
            state.volumes.append(path)
            Path(state.host(path)).mkdir(parents=True, exist_ok=True)

    def _user(self, state: StageState, args: str) -> None:
        state.user = args
        self.skipped.append(f"USER {args}: {SKIPPED_USER}")

    def _stopsignal(self, state: StageState, args: str) -> None:
        state.stopsignal = args

    def _healthcheck(self, state: StageState, args: str) -> None:
        state.healthcheck = parse_healthcheck(args)

    def _cmd(self, state: StageState, args: str) -> None:
        assert args.startswith("["), "CMD: use the exec (JSON) form (signals reach the process)"
        state.cmd = json.loads(args)

    def _copy(self, state: StageState, args: str) -> None:
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        *sources, destination = [w for w in words if not w.startswith("--")]
        source_root = self.context
        for flag in flags:
            name, _, value = flag[2:].partition("=")
            if name == "from":
                source_root = self.stages[value].root
            else:
                assert name in {"chown", "chmod"}, f"COPY {flag}: unknown flag"
        destination = state.resolve(destination)
        into_directory = destination.endswith("/") or len(sources) > 1
        target = Path(state.host(destination))
        for source in sources:
            matches = sorted(glob.glob(str(source_root / source.lstrip("/"))))
            assert matches, f"COPY {source}: not in the {'stage' if flags else 'context'}"
            for match in map(Path, matches):
                if match.is_dir():  # a directory's contents, like Docker
                    shutil.copytree(match, target, dirs_exist_ok=True)
                elif into_directory:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(match, target / match.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(match, target)

    def _run(self, state: StageState, args: str) -> None:
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        if words[0] in SKIPPED_RUN:
            self.skipped.append(f"RUN {words[0]} ...: {SKIPPED_RUN[words[0]]}")
            return
        operators = SHELL_OPERATORS.intersection(words)
        assert not operators, f"RUN {args!r}: {operators} (one plain command per RUN)"
        argv: list[str] = []
        for word in map(state.host, words):
            # /bin/sh -c expands globs; a pattern that matches nothing stays as it is.
            matches = sorted(glob.glob(word)) if any(c in word for c in "*?[") else []
            argv.extend(matches or [word])
        env = {
            **{k: v for k, v in os.environ.items() if BUILD_PASSTHROUGH.fullmatch(k)},
            **state.host_env(),
            "HOME": str(self.tmp / "home"),
        }
        executable = shutil.which(argv[0], path=env["PATH"])
        assert executable, f"RUN {args!r}: {argv[0]} not on PATH {env['PATH']}"
        started = time.monotonic()
        with self.log.open("a") as log:
            log.write(f"\n--- RUN {args}\n--- as {argv}\n")
            log.flush()
            result = subprocess.run(
                [executable, *argv[1:]],
                cwd=state.host(state.workdir),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=STEP_TIMEOUT,
                check=False,
            )
        self.timings[f"RUN {args}"] = time.monotonic() - started
        assert result.returncode == 0, f"RUN {args!r} exited {result.returncode}:\n{self.tail()}"

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def base_python(from_image: str) -> Path:
    """This interpreter's base CPython, standing in for the FROM image's python."""
    match = re.fullmatch(r"python:(\d+)\.(\d+)[.\w-]*", from_image.split("@")[0])
    assert match, f"FROM {from_image}: not an official python image"
    wanted = (int(match.group(1)), int(match.group(2)))
    if sys.version_info[:2] != wanted:
        pytest.skip(reason=f"{from_image} needs Python {wanted}, this is {sys.version_info[:2]}")
    base = Path(getattr(sys, "_base_executable", sys.executable))
    assert base.exists(), base
    return base


def run_healthcheck(command: list[str], env: dict[str, str], timeout: float) -> int:
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable, f"HEALTHCHECK: {command[0]} not on PATH"
    try:
        return subprocess.run(
            [executable, *command[1:]], env=env, capture_output=True, timeout=timeout, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        return -1


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_dockerfile_install_and_start_replay(
    tmp_path: Path, stopper: list[subprocess.Popen[bytes]]
):
    timings: dict[str, float] = {}
    began = time.monotonic()
    stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))

    python_bin = tmp_path / "image-bin"
    python_bin.mkdir()
    for name in ("python", "python3"):
        (python_bin / name).symlink_to(base_python(stages[-1].base))
    assert base_python(stages[0].base)

    context = tmp_path / "context"
    files = build_context(context)
    # The allow-list: only what the image is built from reaches the context.
    assert {f.split("/")[0] for f in files} == {"pyproject.toml", "README.md", "src", "config"}
    assert "config/collector.local.yaml" not in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]

    replay = Replay(tmp_path, context, python_bin, tmp_path / "replay.log")
    (tmp_path / "home").mkdir()
    for index, stage in enumerate(stages):
        started = time.monotonic()
        state = replay.run_stage(index, stage)
        timings[f"stage {stage.name}"] = time.monotonic() - started
        if stage.name == "builder":
            wheels = list((state.root / "wheels").glob("flext_observability-*.whl"))
            assert len(wheels) == 1, f"the builder made {wheels}:\n{replay.tail()}"

    runtime = replay.stages[stages[-1].name or str(len(stages) - 1)]
    venv = Path(runtime.host(runtime.env["VIRTUAL_ENV"]))
    assert (venv / "pyvenv.cfg").is_file(), "RUN python -m venv made no virtualenv"
    assert runtime.cmd is not None
    assert runtime.healthcheck is not None
    assert [entry.split(":")[0] for entry in replay.skipped] == ["RUN groupadd ...", "USER 10001"]

    # The image's config, where the CMD reads it, rewritten only where a container and this
    # machine differ: every interface and the fixed ports of the container -> loopback and
    # free ports; the queue's path (the VOLUME) -> the stand-in root.
    config_path = Path(runtime.host(runtime.cmd[runtime.cmd.index("--config") + 1]))
    assert config_path.read_text() == COLLECTOR_DOCKER_CONFIG.read_text()
    config = yaml.safe_load(config_path.read_text())
    shipped_http_port = config["server"]["http_port"]
    assert config["queue"]["path"] in runtime.volumes
    http_port, grpc_port = free_port(), free_port()
    config["server"].update(host="127.0.0.1", http_port=http_port, grpc_port=grpc_port)
    config["queue"]["path"] = runtime.host(config["queue"]["path"])
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # docker run: the CMD with the image's ENV, from its WORKDIR.
    env = {**runtime.host_env(), "HOME": str(tmp_path / "home")}
    argv = [runtime.host(word) for word in runtime.cmd]
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable == str(venv / "bin" / argv[0]), "the CMD must run from the venv"
    log_path = tmp_path / "collector.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, *argv[1:]],
            cwd=runtime.host(runtime.workdir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stopper.append(process)

    def collector_log() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    # HEALTHCHECK: its command, aimed at the free port, passes within the start period.
    options, check = runtime.healthcheck
    shipped_url = f"127.0.0.1:{shipped_http_port}/"
    assert any(shipped_url in word for word in check), check
    check = [word.replace(shipped_url, f"127.0.0.1:{http_port}/") for word in check]
    check_timeout = seconds(options.get("timeout", "30s"))
    deadline = time.monotonic() + seconds(options.get("start-period", "0s")) + 15
    while run_healthcheck(check, env, check_timeout) != 0:
        assert process.poll() is None, (
            f"the collector exited {process.returncode}:\n{collector_log()}"
        )
        assert time.monotonic() < deadline, f"the healthcheck never passed:\n{collector_log()}"
        time.sleep(0.2)
    timings["CMD until healthy"] = time.monotonic() - started
    assert http_get(f"http://127.0.0.1:{http_port}/healthz").status_code == 200
    assert (Path(config["queue"]["path"])).is_dir()

    # docker stop: STOPSIGNAL, then SIGKILL after the grace period.
    stopped = time.monotonic()
    process.send_signal(getattr(signal, runtime.stopsignal))
    try:
        code = process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit {STOP_TIMEOUT}s after {runtime.stopsignal}:\n{collector_log()}")
    timings["stop"] = time.monotonic() - stopped
    assert code == 0, f"exit code {code} after {runtime.stopsignal}:\n{collector_log()}"
    assert run_healthcheck(check, env, check_timeout) != 0, "healthy after the stop?"

    timings.update(replay.timings)
    timings["total"] = time.monotonic() - began
    report = "\n".join(f"  {seconds_:6.1f}s  {what}" for what, seconds_ in timings.items())
    skipped = "\n".join(f"  skipped {entry}" for entry in replay.skipped)
    print(f"\nDockerfile replay:\n{report}\n{skipped}")
