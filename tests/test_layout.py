"""README's layout table lists every module of the package, so that a reader finds each by its name."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_layout_table_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    named = set(re.findall(r"`(?:automodel/)?([\w/]+\.py)`", layout))
    views_row = next(line for line in layout.splitlines() if line.startswith("| `page/views/`"))
    named |= {f"page/views/{name}.py" for name in re.findall(r"`(\w+)`", views_row)}
    package = ROOT / "automodel"
    modules = {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "tracking"
    }
    assert sorted(modules - named) == [], "modules missing from README's layout table"
