"""JSON in and out through the C accelerator `_json`, without importing the json package.

`import json` pulls in `re` and costs lowrun ~9 ms at every start; the C scanner and
encoder that json itself uses cost nothing to import. `loads` accepts what json.loads
accepts, except NaN and Infinity; a malformed document is described by the json package,
imported only then.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _ScanContext:
    """What `_json.make_scanner` reads from a `json.JSONDecoder`."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]


class JSONError(ValueError):
    """A document that is not JSON; the message names the line and column."""


def loads(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except ValueError as exc:
        if str(exc).endswith("is not valid JSON"):  # from _reject_constant
            raise JSONError(str(exc)) from None
        raise _describe(text) from None
    except (StopIteration, SystemError):
        # SystemError: on a syntax error the C scanner looks for json.decoder in
        # sys.modules to raise JSONDecodeError, and fails without it.
        raise _describe(text) from None
    if text[end:].strip(_WHITESPACE):
        raise _describe(text)
    return value


def _describe(text: str) -> JSONError:
    import json

    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return JSONError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}")
    except ValueError as exc:
        return JSONError(str(exc))

    return JSONError("not a single JSON document")


def _float_repr(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value} is not valid JSON")
    return float.__repr__(value)


def _default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encode = _json.make_encoder(  # type: ignore[attr-defined]
    None, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


def dumps(value: Any, indent: int | None = None) -> str:
    """Compact JSON (`{"a":1}`), or with `indent` spaces per level as json.dumps would."""
    if indent is None:
        return "".join(_encode(value, 0))
    return _pretty(value, indent, 0)


def _pretty(value: Any, indent: int, level: int) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(value, dict) and value:
        items = (
            f"{pad}{_json.encode_basestring_ascii(str(k))}: {_pretty(v, indent, level + 1)}"
            for k, v in value.items()
        )
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, (list, tuple)) and value:
        items = (pad + _pretty(v, indent, level + 1) for v in value)
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    return dumps(value)
