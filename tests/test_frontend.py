"""The browser half's build: shipped assets equal a rebuild from the lockfile; types; unit tests; size.

The pages are built from ``frontend/`` (TypeScript, esbuild, pinned in
``package-lock.json``) into ``src/ha_agent_tracing/web/`` and committed, so that
installing the package needs no Node. These tests are what keeps the committed
assets honest: a source change without a rebuild fails here.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
WEB = ROOT / "src" / "ha_agent_tracing" / "web"
JS_BUDGET_GZIP = 40 * 1024


def _run(command: list[str], cwd: Path, timeout: float = 300) -> str:
    npm_or_node = shutil.which(command[0])
    assert npm_or_node is not None, f"{command[0]} is not on PATH: the frontend needs Node.js and npm"
    done = subprocess.run(
        [npm_or_node, *command[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{output}"
    return output


def _installed() -> None:
    assert (FRONTEND / "node_modules" / ".package-lock.json").is_file(), (
        "frontend/node_modules is missing: ./scripts/test installs it (npm ci in frontend/)"
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shipped_assets_equal_a_rebuild_from_the_lockfile(tmp_path: Path) -> None:
    """npm ci + the build, in a clean copy of frontend/, write exactly the committed web/ files."""
    source = tmp_path / "frontend"
    shutil.copytree(FRONTEND, source, ignore=shutil.ignore_patterns("node_modules"))
    _run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], source)
    out = tmp_path / "web"
    _run(["node", "build.mjs", "--outdir", str(out)], source)
    rebuilt, shipped = _tree(out), _tree(WEB)
    assert sorted(rebuilt) == sorted(shipped), "the pages built differ from the committed ones"
    stale = [name for name in rebuilt if rebuilt[name] != shipped[name]]
    assert not stale, f"committed assets differ from a rebuild (run `npm run build` in frontend/): {stale}"


def test_build_is_deterministic(tmp_path: Path) -> None:
    """Two builds of the same sources are byte-identical (no timestamps, no hashed names)."""
    _installed()
    first, second = tmp_path / "a", tmp_path / "b"
    _run(["node", "build.mjs", "--outdir", str(first)], FRONTEND)
    _run(["node", "build.mjs", "--outdir", str(second)], FRONTEND)
    assert _tree(first) == _tree(second)
    assert "chat/main.js" in _tree(first)


def test_build_refuses_an_entry_point_outside_the_page_layout(tmp_path: Path) -> None:
    """An entry point must be src/<page>/main.ts; anything else is a clear error, not a stray file."""
    _installed()
    done = subprocess.run(
        ["node", "build.mjs", "--outdir", str(tmp_path), "src/performanceTracker.ts"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "src/<page>/main.ts" in done.stderr
    assert not any(tmp_path.iterdir())


def test_typescript_passes_strict_typecheck() -> None:
    """tsc --strict (noEmit) over the sources and the unit tests."""
    _installed()
    _run(["npm", "run", "--silent", "typecheck"], FRONTEND)


def test_tracker_unit_tests_pass_in_node() -> None:
    """performanceTracker.ts's unit tests, in node's own test runner, on the real OpenTelemetry SDK."""
    _installed()
    output = _run(["node", "test.mjs"], FRONTEND)
    summary = {
        line.split()[1]: int(line.split()[2])
        for line in output.splitlines()
        if line.startswith("# ") and len(line.split()) == 3 and line.split()[2].isdigit()
    }
    assert summary.get("fail") == 0 and summary.get("pass", 0) >= 15, output[-2000:]


def test_page_javascript_fits_the_budget() -> None:
    """All JavaScript of the chat page is at most 40 KB gzipped."""
    scripts = sorted((WEB / "chat").glob("*.js"))
    assert scripts, "no built JavaScript in web/chat"
    size = sum(len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in scripts)
    assert size <= JS_BUDGET_GZIP, f"{size} bytes gzipped > {JS_BUDGET_GZIP}"


def test_page_loads_nothing_from_elsewhere() -> None:
    """The page's HTML and CSS use relative URLs only: no CDN, no absolute path, so it works under a prefix."""
    html = (WEB / "chat" / "index.html").read_text()
    for attribute in ('src="', 'href="'):
        for value in html.split(attribute)[1:]:
            url = value.split('"', 1)[0]
            assert not url.startswith(("/", "http:", "https:", "//")), url
    css = (WEB / "chat" / "main.css").read_text()
    assert "url(" not in css and "@import" not in css


@pytest.mark.slow
def test_a_wheel_install_ships_the_page(tmp_path: Path) -> None:
    """A non-editable install (the wheel) contains the built page, so install-and-demo needs no Node."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("ha_agent_tracing-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for page_file in ("index.html", "main.js", "main.css"):
        assert f"ha_agent_tracing/web/chat/{page_file}" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    installed = target / "ha_agent_tracing" / "web" / "chat"
    assert (installed / "main.js").read_bytes() == (WEB / "chat" / "main.js").read_bytes()
