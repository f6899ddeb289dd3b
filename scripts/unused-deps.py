#!/usr/bin/env python3
"""Finds dependencies a crate declares but never names.

For every crate of the workspace, each entry of `[dependencies]` must be named
(`name::`, `use name`, `name!`, `#[name::...]`) somewhere in its `src/` or
`build.rs`, and each entry of `[dev-dependencies]` somewhere in its sources,
tests, benches or examples. A dependency needed for another reason (a feature
switched on, a linked library) is listed, with the reason, under
`[package.metadata.unused-deps] ignore = [...]` in the crate's Cargo.toml.
Exits 1 and names each unused one, else 0.
"""

import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def sources(crate: pathlib.Path, dirs: list[str]) -> str:
    text = []
    for d in dirs:
        p = crate / d
        if p.is_file():
            text.append(p.read_text())
        elif p.is_dir():
            text.extend(f.read_text() for f in sorted(p.rglob("*.rs")))
    return "\n".join(text)


def unused(crate: pathlib.Path) -> list[str]:
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    ignore = set(
        manifest.get("package", {})
        .get("metadata", {})
        .get("unused-deps", {})
        .get("ignore", [])
    )
    found = []
    for table, dirs in [
        ("dependencies", ["src", "build.rs"]),
        ("build-dependencies", ["build.rs"]),
        ("dev-dependencies", ["src", "tests", "benches", "examples", "build.rs"]),
    ]:
        code = sources(crate, dirs)
        # Also the top-level examples when the crate's manifest points at them.
        for ex in manifest.get("example", []):
            path = crate / ex.get("path", "")
            if path.is_file():
                code += "\n" + path.read_text()
        for key in manifest.get(table, {}):
            if key in ignore:
                continue
            name = key.replace("-", "_")
            if not re.search(rf"(?<![\w:]){re.escape(name)}(::|!|\s*;|\s*\{{|\s+as\b)", code):
                found.append(f"{crate.relative_to(ROOT)}: [{table}] {key}")
    return found


def main() -> int:
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
    crates = []
    for pattern in workspace["members"]:
        crates.extend(p for p in sorted(ROOT.glob(pattern)) if (p / "Cargo.toml").is_file())
    problems = [u for c in crates for u in unused(c)]
    for p in problems:
        print(f"unused dependency: {p}")
    if problems:
        print("remove them, or list them with the reason under "
              "[package.metadata.unused-deps] ignore = [...]")
        return 1
    print(f"no unused dependencies in {len(crates)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
