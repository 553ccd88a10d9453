"""The JVM side of the stack: fetching Kafka, Connect, Debezium and Apicurio from Maven
Central once, and building the java command lines that run them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from string import Template

from govsync.stack.process import StackError
from streams.config.secrets import write_private
from streams.config.settings import REPO_ROOT, Settings

DEPLOY = REPO_ROOT / "deploy" / "local"
_POMS = ("pom.xml", "converter-pom.xml", "registry-pom.xml")


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("Java 17+ is not installed: run `make install-system` (openjdk-17-jre)")
    return java


def _dist_is_complete(dist: Path) -> bool:
    return (
        any((dist / "kafka" / "libs").glob("kafka_2.13-*.jar"))
        and any((dist / "kafka" / "libs").glob("connect-mirror-*.jar"))
        and (dist / "plugins" / "debezium-connector-postgres").is_dir()
        and (dist / "plugins" / "debezium-connector-mariadb").is_dir()
        and any((dist / "plugins" / "apicurio-converter").glob("*.jar"))
        and registry_jar(dist) is not None
    )


def ensure_dist(settings: Settings) -> None:
    """Resolve the pom files into the state directory; a no-op when already done."""
    dist = settings.dist_dir
    stamp = dist / ".poms"
    wanted = "".join((DEPLOY / pom).read_text() for pom in _POMS)
    if _dist_is_complete(dist) and stamp.exists() and stamp.read_text() == wanted:
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven is not installed: run `make install-system` (maven)")
    java_binary()
    if dist.exists():
        shutil.rmtree(dist)
    for pom in _POMS:
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-s",
                str(DEPLOY / "settings.xml"),
                "-f",
                str(DEPLOY / pom),
                "package",
                f"-Ddist.dir={dist}",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line]
            reason = errors[0] if errors else result.stderr.strip()[-300:]
            raise StackError(f"fetching {pom} from Maven Central failed: {reason}")
    stamp.write_text(wanted)


def registry_jar(dist: Path) -> Path | None:
    return next((dist / "apicurio").glob("apicurio-registry-app-*-runner.jar"), None)


def render_config(template: str, destination: Path, **values: object) -> str:
    """Fill a ``deploy/local`` template's ``${name}`` placeholders into the state directory
    (owner-only: the configs carry passwords)."""
    write_private(destination, Template((DEPLOY / template).read_text()).substitute(values))
    return str(destination)


def classpath(directory: Path) -> str:
    return f"{directory}/*"


def jar_version(directory: Path, prefix: str) -> str | None:
    """Version from a jar file name, e.g. kafka_2.13-4.2.2.jar -> 4.2.2."""
    for jar in sorted(directory.glob(f"{prefix}-*.jar")):
        return jar.stem.removeprefix(f"{prefix}-")
    return None


def java_command(
    main: str | None,
    *,
    heap: str,
    cp: str | None = None,
    jar: Path | None = None,
    system_properties: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> list[str]:
    argv = [
        java_binary(),
        f"-Xms{min(heap, '256m', key=_megabytes)}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=50",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={DEPLOY / 'log4j2.properties'}",
    ]
    argv += [f"-D{key}={value}" for key, value in (system_properties or {}).items()]
    if jar is not None:
        argv += ["-jar", str(jar)]
    else:
        argv += ["-cp", cp or "", main or ""]
    return argv + (args or [])


def _megabytes(size: str) -> int:
    units = {"m": 1, "g": 1024}
    return int(size[:-1]) * units[size[-1].lower()]
