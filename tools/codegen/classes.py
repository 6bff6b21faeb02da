"""Emits the dataclasses: one per message, its structs nested inside it, common structs at module level.

One class serves every version; a field the version lacks keeps its default.  Each field carries a
comment saying in which versions it exists and how (nullable, tagged).
"""

from __future__ import annotations

from tools.codegen.codewriter import Code, ModuleSymbols
from tools.codegen.pytypes import annotation, dataclass_default
from tools.codegen.schema import FieldSpec, MessageSpec, StructSpec


def field_comment(f: FieldSpec) -> str:
    parts = [f.versions.describe()]
    if not f.nullable_versions.empty:
        parts.append(f"nullable {f.nullable_versions.describe()}")
    if f.tag is not None:
        parts.append(f"tag {f.tag} in {f.tagged_versions.describe()}")
    if f.ignorable:
        parts.append("ignorable")
    return ", ".join(parts)


def _field_lines(code: Code, fields: list[FieldSpec], symbols: ModuleSymbols, nested_in: bool) -> None:
    for f in fields:
        if f.type_name == "uuid":
            symbols.uses_uuid = True
        if f.type_name == "records":
            symbols.helper("Records")
        default = dataclass_default(f, symbols, owner_is_nested=nested_in)
        code.line(f"{f.attr}: {annotation(f)} = {default}  # {field_comment(f)}")


def emit_struct_class(code: Code, spec: StructSpec, symbols: ModuleSymbols, nested_in: bool) -> None:
    """`@dataclass class Name:` with one line per field."""
    code.line("@dataclass(slots=True)")
    with code.block(f"class {spec.name}:"):
        if not spec.fields:
            code.line("pass")
        _field_lines(code, spec.fields, symbols, nested_in)


def emit_message_class(code: Code, message: MessageSpec, symbols: ModuleSymbols) -> None:
    """The message's top-level class with its nested struct classes inside it."""
    code.line("@dataclass(slots=True)")
    with code.block(f"class {message.name}:"):
        for nested in message.nested:
            emit_struct_class(code, nested, symbols, nested_in=True)
            code.line("")
        if not message.nested and not message.root.fields:
            code.line("pass")
        _field_lines(code, message.root.fields, symbols, nested_in=False)
