"""The README stays short and the reference pages stay whole: every flag of every `orch` command
is in docs/cli.md, and every relative link in README.md and docs/*.md points at a file."""
import re
from pathlib import Path

import click
import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def command_flags() -> list[tuple[str, str]]:
    """(command, --flag) for every long option of every `orch` command."""
    return [(name, opt) for name, command in sorted(main.commands.items())
            for param in command.params if isinstance(param, click.Option)
            for opt in param.opts + param.secondary_opts if opt.startswith("--")]


def test_every_flag_is_documented() -> None:
    cli_page = (ROOT / "docs" / "cli.md").read_text()
    flags = command_flags()
    assert flags, "no flags found: did orchestrator.cli.main stop being a click group?"
    missing = [f"orch {name} {opt}" for name, opt in flags
               if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", cli_page)]
    assert not missing, f"flags missing from docs/cli.md: {missing}"


def test_every_command_is_documented() -> None:
    cli_page = (ROOT / "docs" / "cli.md").read_text()
    missing = [name for name in main.commands if f"`orch {name}" not in cli_page]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_readme_is_short() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 300, f"README.md has {lines} lines; move reference text to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor on the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"
