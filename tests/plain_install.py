"""An environment with only what ``pip install ha-agent-tracing`` brings, built from the test venv.

Installing the package into a fresh venv from the registry takes minutes and
needs the network; this builds the same set of distributions in seconds: the
package's requirements without extras, followed recursively through the
installed metadata (markers evaluated as pip would), become a fresh venv whose
site-packages holds links to exactly those distributions' files, with their
console scripts. Anything only the ``test`` or ``dev`` extras install (the
OpenTelemetry distro was one) is absent, as it is after a user's install.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(root: str) -> dict[str, metadata.Distribution]:
    """``root`` and every distribution its requirements (without extras) pull in, recursively."""
    found: dict[str, metadata.Distribution] = {}
    extras_of: dict[str, set[str]] = {}
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while pending:
        name, extras = pending.pop()
        key = canonicalize_name(name)
        if key in found and extras <= extras_of[key]:
            continue
        extras_of.setdefault(key, set()).update(extras)
        dist = found[key] = metadata.distribution(name)
        environments = [{"extra": extra} for extra in extras_of[key]] or [{"extra": ""}]
        for raw in dist.requires or ():
            requirement = Requirement(raw)
            if requirement.marker is None or any(requirement.marker.evaluate(e) for e in environments):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return found


def _script(python: Path, value: str) -> str:
    module, _, attribute = value.partition(":")
    call = f"{module}.{attribute}" if attribute else module
    return f"#!{python}\nimport sys\nimport {module}\nif __name__ == '__main__':\n    sys.exit({call}())\n"


def plain_venv(root: str, target: Path) -> Path:
    """A venv at ``target`` with exactly ``closure(root)``; returns its ``bin`` directory."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(target), "platbase": str(target)}))
    bin_dir = target / "bin"
    python = bin_dir / "python"
    for dist in closure(root).values():
        site = Path(str(dist.locate_file("")))
        for file in dist.files or ():
            source = Path(str(dist.locate_file(file))).resolve()
            try:
                relative = Path(str(dist.locate_file(file))).relative_to(site)
            except ValueError:
                continue
            if (relative.parts and relative.parts[0] == "..") or not source.is_file():
                continue  # scripts and data outside site-packages: console scripts are written below
            destination = purelib / relative
            if destination.exists():
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.symlink_to(source)
        for entry_point in dist.entry_points:
            if entry_point.group == "console_scripts":
                script = bin_dir / entry_point.name
                script.write_text(_script(python, entry_point.value))
                script.chmod(0o755)
    return bin_dir
