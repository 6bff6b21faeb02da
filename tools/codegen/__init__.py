"""Generator of Strom's Kafka protocol codec (`strom/protocol/messages/`) from Kafka's JSON schemas.

`render_all(schema_dir)` returns every generated file by name; `python -m tools.codegen` writes them
(or, with `--check`, reports whether the committed output is current).

Each API module (e.g. `produce.py`) holds: `API_KEY`, `API_NAME`, `MIN_VERSION`, `MAX_VERSION`,
`FLEXIBLE_MIN_VERSION`, `LATEST_VERSION_UNSTABLE`, `LISTENERS`; one dataclass per message with its
structs nested inside (common structs at module level); one straight-line decoder and encoder per
distinct version layout, picked from a tuple by version; and `decode_request`, `encode_request`,
`decode_response`, `encode_response`, which check the version and turn low-level failures into
`DecodeError` / `EncodeError`.  The pieces: `schema` (JSON -> model), `pytypes` (Python types and
defaults), `classes`, `decoder`, `encoder` (emitters), `module` (assembly), `codewriter` (source text).
"""

from __future__ import annotations

from pathlib import Path

from tools.codegen.module import GENERATED_MARKER, render_api_module, render_data_module, render_registry
from tools.codegen.schema import load_apis, load_data_modules

__all__ = ["GENERATED_MARKER", "render_all", "stale_files", "write_all"]


def render_all(schema_dir: Path) -> dict[str, str]:
    """Every generated module's source, keyed by file name (deterministic for given schemas)."""
    apis = load_apis(schema_dir)
    data_modules = load_data_modules(schema_dir)
    files = {f"{api.module_name}.py": render_api_module(api) for api in apis}
    for module in data_modules:
        files[f"{module.module_name}.py"] = render_data_module(module)
    files["__init__.py"] = render_registry(apis, data_modules)
    return dict(sorted(files.items()))


def stale_files(out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Previously generated files in `out_dir` that the schemas no longer produce."""
    stale = []
    for path in sorted(out_dir.glob("*.py")):
        if path.name not in files and path.read_text(encoding="utf-8").startswith(GENERATED_MARKER):
            stale.append(path)
    return stale


def write_all(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Write changed files, delete stale generated ones; return the names of what changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for path in stale_files(out_dir, files):
        path.unlink()
        changed.append(path.name)
    return changed
