"""A small command-line parser for runc's grammar: global flags, a command, its flags, its
positional arguments, and (for exec and ps) the rest of the line as they are.

argparse would do, but importing it and building lowrun's parser costs ~15 ms, more
than half of what a whole `runc run` takes; this table-driven parser costs well under one.
"""

from __future__ import annotations

from types import SimpleNamespace

from lowrun.errors import UsageError

# Flag kinds
BOOL = "bool"
VALUE = "value"
INT = "int"
LIST = "list"


class Flag:
    __slots__ = ("default", "dest", "help", "kind", "names")

    def __init__(self, names: str, kind: str = BOOL, help: str = "", default: object = None):
        self.names = tuple(names.split(","))
        self.kind = kind
        self.help = help
        self.dest = self.names[0].lstrip("-").replace("-", "_")
        if default is None:
            default = {BOOL: False, LIST: [], INT: 0}.get(kind)
        self.default = default


class Command:
    __slots__ = ("flags", "help", "name", "positionals", "rest")

    def __init__(self, name: str, help: str, flags: list[Flag], positionals: tuple[str, ...] = (),
                 rest: str | None = None):
        self.name = name
        self.help = help
        self.flags = flags
        self.positionals = positionals
        """Names of the positional arguments; a trailing '?' makes one optional."""
        self.rest = rest
        """If set, the attribute that receives every word after the positionals."""


def _lookup(flags: list[Flag]) -> dict[str, Flag]:
    return {name: flag for flag in flags for name in flag.names}


def _convert(flag: Flag, value: str, where: str) -> object:
    if flag.kind == INT:
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"{where}{flag.names[0]} {value!r}: expected a number") from None
    return value


def _take_flags(words: list[str], i: int, flags: list[Flag], ns: SimpleNamespace,
                where: str) -> int:
    """Consume the flags that start at words[i]; return the index of the first other word."""
    table = _lookup(flags)
    while i < len(words):
        word = words[i]
        if word == "--":
            return i + 1
        if not word.startswith("-") or word == "-":
            return i
        name, eq, inline = word.partition("=")
        flag = table.get(name)
        if flag is None:
            raise UsageError(f"{where}unknown flag {name}")
        if flag.kind == BOOL:
            if eq:
                setattr(ns, flag.dest, inline.lower() in ("1", "true", "yes"))
            else:
                setattr(ns, flag.dest, True)
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(words):
            value = words[i + 1]
            i += 2
        else:
            raise UsageError(f"{where}flag {name} needs a value")
        converted = _convert(flag, value, where)
        if flag.kind == LIST:
            getattr(ns, flag.dest).append(converted)
        else:
            setattr(ns, flag.dest, converted)
    return i


def _defaults(ns: SimpleNamespace, flags: list[Flag]) -> None:
    for flag in flags:
        setattr(ns, flag.dest, list(flag.default) if flag.kind == LIST else flag.default)  # type: ignore[call-overload]


def parse(argv: list[str], global_flags: list[Flag], commands: list[Command]) -> SimpleNamespace:
    """Parse argv (without the program name). `command` is None when no command was given."""
    ns = SimpleNamespace(command=None, help=False)
    _defaults(ns, global_flags)
    i = _take_flags(argv, 0, global_flags, ns, "")
    if ns.help or i >= len(argv):
        return ns
    by_name = {c.name: c for c in commands}
    command = by_name.get(argv[i])
    if command is None:
        raise UsageError(f"unknown command {argv[i]!r}; see 'lowrun --help'")
    ns.command = command.name
    where = f"{command.name}: "
    _defaults(ns, command.flags)
    i = _take_flags(argv, i + 1, command.flags, ns, where)
    if getattr(ns, "help", False):
        return ns
    for name in command.positionals:
        optional = name.endswith("?")
        dest = name.rstrip("?")
        if i < len(argv):
            setattr(ns, dest, argv[i])
            i += 1
            if command.rest is None:
                i = _take_flags(argv, i, command.flags, ns, where)
        elif optional:
            setattr(ns, dest, None)
        else:
            raise UsageError(f"{where}missing {dest.replace('_', ' ')}")
    if command.rest is not None:
        rest = argv[i:]
        setattr(ns, command.rest, rest[1:] if rest[:1] == ["--"] else rest)
    elif i < len(argv):
        raise UsageError(f"{where}unexpected argument {argv[i]!r}")
    return ns


def usage(global_flags: list[Flag], commands: list[Command], command: str | None = None) -> str:
    lines: list[str] = []
    if command is None:
        lines.append("usage: lowrun [global flags] COMMAND [flags] ARGS...\n\ncommands:")
        lines += [f"  {c.name:10} {c.help}" for c in commands]
        flags = global_flags
        lines.append("\nglobal flags:")
    else:
        c = next(c for c in commands if c.name == command)
        args = " ".join(p.upper().rstrip("?") for p in c.positionals)
        rest = f" {c.rest.upper()}..." if c.rest else ""
        lines.append(f"usage: lowrun {c.name} [flags] {args}{rest}\n\n{c.help}\n\nflags:")
        flags = c.flags
    for flag in flags:
        value = "" if flag.kind == BOOL else " VALUE"
        lines.append(f"  {', '.join(flag.names) + value:28} {flag.help}")
    return "\n".join(lines) + "\n"
