"""The package map of the README is the rule: every import inside ``src/ajuste`` follows its table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "ajuste"
ROW = re.compile(r"^\| `ajuste\.(\w+)` \| .+ \| (.+) \|$")


def allowed_imports() -> dict[str, set[str]]:
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            name, rule = match.groups()
            rows[name] = {"*"} if rule == "every package" else set(re.findall(r"`(\w+)`", rule))
    return rows


def unit(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imports(path: Path) -> set[str]:
    """The ajuste packages and modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ajuste":
            parts = node.module.split(".")
            names = [a.name for a in node.names] if len(parts) == 1 else [parts[1]]
            found.update(n for n in names if not n.startswith("__"))
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ajuste."))
    return found


def test_every_package_is_on_the_map() -> None:
    units = {unit(p) for p in SOURCE.rglob("*.py")} - {"__init__"}
    assert units == set(allowed_imports())


def test_every_import_follows_the_map() -> None:
    rules = allowed_imports()
    wrong = []
    for path in sorted(SOURCE.rglob("*.py")):
        owner = unit(path)
        if owner == "__init__":  # the package's public face re-exports what it likes
            continue
        for imported in sorted(imports(path) - {owner}):
            if "*" not in rules[owner] and imported not in rules[owner]:
                wrong.append(f"{path.relative_to(ROOT)} imports ajuste.{imported}")
    assert wrong == []


def test_the_model_folder_knows_nothing_of_the_run_folder() -> None:
    """What is below ``runs`` never imports it: TextClassifier.save writes the model's own files only."""
    rules = allowed_imports()
    for below in ("training", "models", "data", "tokenize", "config", "validation", "cache"):
        assert "runs" not in rules[below] and "search" not in rules[below]
