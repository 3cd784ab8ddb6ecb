"""The README's test command: CI runs it word for word, and it sets up or names what the tests need."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .conftest import REPO


def readme_command(heading: str) -> str:
    """The indented command that follows the README line starting with ``heading``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(heading)}.*?\n\n    ([^\n]+)\n", text, flags=re.M | re.S)
    assert found, heading
    return found.group(1)


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    command = readme_command("Run the tests")
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [command]


def test_the_main_job_installs_the_core_package_only() -> None:
    assert ".venv/bin/pip install -e . " in readme_command("Set up and run the main job") + " "


def test_a_missing_browser_that_cannot_be_installed_is_named_in_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with no chromium, no chromedriver and no package manager
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run([str(REPO / "scripts" / "test.sh")], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bin_dir)}, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "chromium chromium-driver" in lines[0] and "sudo apt-get install chromium chromium-driver" in lines[0]
    assert not proc.stdout  # stopped at once: no venv, no pytest
