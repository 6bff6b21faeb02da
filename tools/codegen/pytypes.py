"""How schema fields look in Python: annotations, default values, and "differs from default" tests."""

from __future__ import annotations

from tools.codegen.codewriter import ModuleSymbols
from tools.codegen.schema import INT_TYPES, NO_DEFAULT, FieldSpec, SchemaError

_SCALAR_TYPES = {
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "int64": "int",
    "uint16": "int",
    "uint32": "int",
    "float64": "float",
    "bool": "bool",
    "string": "str",
    "bytes": "bytes",
    "uuid": "uuid.UUID",
}


def element_type(f: FieldSpec) -> str:
    """The Python type of one value (one element, for arrays)."""
    if f.struct is not None:
        return f.struct.qualname
    if f.type_name == "records":
        return "Records"
    if f.type_name == "bytes" and f.zero_copy:
        return "bytes | memoryview"
    return _SCALAR_TYPES[f.type_name]


def annotation(f: FieldSpec) -> str:
    """The dataclass annotation of a field."""
    if f.type_name == "records" and not f.is_array:
        return "Records"  # already includes None
    base = f"list[{element_type(f)}]" if f.is_array else element_type(f)
    return f"{base} | None" if f.ever_nullable else base


def local_type(f: FieldSpec, nullable: bool) -> str:
    """The static type of a local holding the field's value in one version (for name allocation)."""
    if f.type_name == "records" and not f.is_array:
        return "Records"
    base = f"list[{element_type(f)}]" if f.is_array else element_type(f)
    return f"{base} | None" if nullable else base


def default_literal(f: FieldSpec, symbols: ModuleSymbols) -> str:
    """An expression for the field's default value; builds a fresh object for mutable defaults."""
    value = f.default
    if value is None:
        return "None"
    if f.is_array:
        return "[]"
    if f.struct is not None:
        return f"{f.struct.qualname}()"
    t = f.type_name
    if value is NO_DEFAULT:
        if t in INT_TYPES:
            return "0"
        if t == "uuid":
            return symbols.helper("UUID_ZERO")
        return {"float64": "0.0", "bool": "False", "string": '""', "bytes": 'b""', "records": "None"}[t]
    if t in INT_TYPES:
        return repr(int(value))
    if t == "float64":
        return repr(float(value))
    if t == "bool":
        return repr(bool(value))
    if t == "string":
        return _string_literal(value)
    if t == "uuid":
        symbols.uses_uuid = True
        return f"uuid.UUID({_string_literal(value)})"
    raise SchemaError(f"no default literal for {f.name}")


def dataclass_default(f: FieldSpec, symbols: ModuleSymbols, owner_is_nested: bool) -> str:
    """The right-hand side of a dataclass field declaration."""
    if f.default is None:
        return "None"
    if f.is_array:
        return "field(default_factory=list)"
    if f.struct is not None:
        if f.struct.common or not owner_is_nested:
            return f"field(default_factory={f.struct.name})"  # in scope where the field is declared
        # A nested class body cannot see its sibling classes; resolve the sibling when called.
        return f"field(default_factory=lambda: {f.struct.qualname}())"
    return default_literal(f, symbols)


def non_default_test(f: FieldSpec, expr: str, symbols: ModuleSymbols) -> str:
    """A condition that is true when `expr` (the field's value) differs from the field's default."""
    if f.default is None or f.type_name == "records":
        return f"{expr} is not None"
    if f.is_array:
        return f"{expr} is None or len({expr}) != 0"
    if f.struct is not None:
        fields = f.struct.fields
        if fields and all(not g.is_array and g.struct is None for g in fields):
            # Field by field: several times faster than comparing with a default instance.
            return " or ".join(non_default_test(g, f"{expr}.{g.attr}", symbols) for g in fields)
        return f"{expr} != {symbols.default_struct(f.struct.qualname)}"
    t = f.type_name
    if t == "bytes":
        return f"{expr} is None or len({expr}) != 0"
    if t == "bool":
        default_true = f.default is not NO_DEFAULT and bool(f.default)
        return f"not {expr}" if default_true else f"bool({expr})"
    return f"{expr} != {default_literal(f, symbols)}"


def _string_literal(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
