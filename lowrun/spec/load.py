"""Load a bundle: read config.json, check it against the runtime-spec schema and the rules
the schema cannot express, and find the rootfs.

Everything here is on the path of every `lowrun create`/`run`, so it imports only what
costs nothing: JSON goes through `lowrun.jsonio` (the `json` package imports `re`,
~6 ms here), the schema check is the validator generated at setup from
`oci-specs/runtime-spec/` (see `codegen.py`), and `Bundle` is a plain frozen class
(`import dataclasses` alone costs ~19 ms). Errors are the slow path and may import
what they like.

Every problem with the configuration is a `ConfigError(where, problem)` whose `where`
is a JSON path into config.json (`$.mounts[2].destination`); problems with the bundle
directory itself are `BundleError`s.
"""

from __future__ import annotations

import os

from lowrun import jsonio
from lowrun.errors import BundleError, ConfigError, LowrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONFIG_NAME = "config.json"

# Namespace types lowrun can enter by `path` (setns). Since Linux 5.8 that is every type
# the spec names; the check stays so that a type added to the schema is not joined blindly.
JOINABLE_NAMESPACES = frozenset(
    {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
)

# The entry under /proc/self/ns/ that exists when the kernel has a namespace type.
_PROC_NS_NAMES = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc",
    "uts": "uts", "user": "user", "cgroup": "cgroup", "time": "time",
}


class Bundle:
    """A loaded bundle. Frozen: a bundle's meaning must not change once it was validated.

    `path` is the absolute bundle directory, `config` the parsed and validated
    config.json, `rootfs` the absolute `root.path` resolved against the bundle.
    """

    __slots__ = ("config", "path", "rootfs")
    path: str
    config: dict[str, Any]
    rootfs: str

    def __init__(self, path: str, config: dict[str, Any], rootfs: str) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "rootfs", rootfs)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Bundle is frozen: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Bundle is frozen: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bundle):
            return NotImplemented
        return (self.path, self.config, self.rootfs) == (other.path, other.config, other.rootfs)

    def __repr__(self) -> str:
        keys = len(self.config)
        return f"Bundle(path={self.path!r}, rootfs={self.rootfs!r}, config=<{keys} keys>)"


# --- JSON ----------------------------------------------------------------------------


def parse_json(raw: bytes | str, what: str = CONFIG_NAME) -> Any:
    """Parse a JSON document strictly (no NaN/Infinity); errors name the line and column."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError("$", f"{what} is not UTF-8 (byte {exc.start})") from None
    try:
        return jsonio.loads(raw)
    except jsonio.JSONError as exc:
        place = "" if "is not valid JSON" in str(exc) else "at "
        raise ConfigError("$", f"invalid JSON in {what}: {place}{exc}") from None


# --- paths ---------------------------------------------------------------------------


def json_path(parts: list[str | int] | tuple[str | int, ...], root: str = "$") -> str:
    """`["mounts", 2, "destination"]` -> `$.mounts[2].destination`; odd keys are quoted."""
    out = [root]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append("." + part)
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


def _find_path(data: Any, target: str) -> list[str | int] | None:
    """Translate a fastjsonschema name (`data.a.b[0]`) into path parts, using the data
    itself to tell a key holding a dot from two keys."""
    stack: list[tuple[Any, str, list[str | int]]] = [(data, "data", [])]
    while stack:
        node, name, parts = stack.pop()
        if name == target:
            return parts
        if isinstance(node, dict):
            for key, child in node.items():
                child_name = f"{name}.{key}"
                if target.startswith(child_name):
                    stack.append((child, child_name, [*parts, key]))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                child_name = f"{name}[{index}]"
                if target.startswith(child_name):
                    stack.append((child, child_name, [*parts, index]))
    return None


def _short(value: Any) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the schema ----------------------------------------------------------------------

_validator: Any = None


def _schema_validator() -> Any:
    """The generated module; built in memory if setup has not generated it yet (dev trees)."""
    global _validator
    if _validator is None:
        try:
            from lowrun.spec import _generated_validator as module
        except ImportError:
            module = _build_validator_in_memory()
        _validator = module
    return _validator


def _build_validator_in_memory() -> Any:
    from pathlib import Path
    from types import ModuleType

    try:
        from lowrun.spec import codegen

        source = codegen.generate_source(Path(__file__).resolve().parents[2])
    except (ImportError, OSError) as exc:
        raise LowrunError(
            "lowrun/spec/_generated_validator.py is missing and cannot be generated "
            f"({exc}): run `make setup`"
        ) from None
    module = ModuleType("lowrun.spec._generated_validator")
    exec(compile(source, module.__name__, "exec"), module.__dict__)
    return module


def _schema_error(config: Any, exc: Any) -> ConfigError:
    name: str = exc.name or "data"
    parts = _find_path(config, name)
    where = json_path(parts) if parts is not None else "$" + name[4:]
    problem = str(exc.message)
    if problem.startswith(name):
        problem = problem[len(name) :].strip()
    if exc.rule == "required" and isinstance(exc.value, dict) and "[" in problem:
        listed = problem[problem.index("[") + 1 : problem.rindex("]")]
        names = [n.strip().strip("'\"") for n in listed.split(",") if n.strip()]
        missing = [n for n in names if n not in exc.value]
        if parts is not None and missing:
            return ConfigError(json_path([*parts, missing[0]]), "is required but missing")
    elif exc.rule in ("type", "enum", "pattern", "minimum", "maximum", "minLength", "minItems"):
        problem = f"{problem} (got {_short(exc.value)})"
    return ConfigError(where, problem)


def check_schema(config: Any) -> None:
    """Check `config` against the runtime-spec schema (the generated validator)."""
    validator = _schema_validator()
    try:
        validator.validate(config)
    except validator.JsonSchemaValueException as exc:
        raise _schema_error(config, exc) from None


# --- what the schema cannot say ------------------------------------------------------


def _check_process(process: dict[str, Any], where: str) -> None:
    args = process.get("args")
    if not args:
        raise ConfigError(f"{where}.args", "must name the program to run (it is empty or missing)")
    cwd = process.get("cwd", "")
    if not cwd.startswith("/"):
        raise ConfigError(f"{where}.cwd", f"must be an absolute path (got {cwd!r})")
    seen: dict[str, int] = {}
    for index, rlimit in enumerate(process.get("rlimits") or ()):
        kind = rlimit["type"]
        if kind in seen:
            raise ConfigError(
                f"{where}.rlimits[{index}].type",
                f"{kind} is set twice (first at {where}.rlimits[{seen[kind]}])",
            )
        seen[kind] = index


def _check_mounts(mounts: list[dict[str, Any]]) -> None:
    for index, mount in enumerate(mounts):
        destination = mount["destination"]
        if not destination.startswith("/"):
            raise ConfigError(
                f"$.mounts[{index}].destination",
                f"must be an absolute path inside the container (got {destination!r})",
            )


def _check_namespaces(config: dict[str, Any]) -> None:
    linux = config.get("linux") or {}
    first: dict[str, int] = {}
    for index, namespace in enumerate(linux.get("namespaces") or ()):
        kind = namespace["type"]
        where = f"$.linux.namespaces[{index}]"
        if kind in first:
            raise ConfigError(
                f"{where}.type",
                f"namespace type {kind!r} is listed twice "
                f"(first at $.linux.namespaces[{first[kind]}])",
            )
        first[kind] = index
        proc_name = _PROC_NS_NAMES.get(kind, kind)
        if not os.path.exists(f"/proc/self/ns/{proc_name}"):
            raise ConfigError(
                f"{where}.type",
                f"this kernel has no {kind} namespaces (/proc/self/ns/{proc_name} is missing)",
            )
        if "path" in namespace:
            path = namespace["path"]
            if kind not in JOINABLE_NAMESPACES:
                raise ConfigError(
                    f"{where}.path",
                    f"lowrun cannot join an existing {kind} namespace; "
                    f"a path is allowed for: {', '.join(sorted(JOINABLE_NAMESPACES))}",
                )
            if not path.startswith("/"):
                raise ConfigError(f"{where}.path", f"must be an absolute path (got {path!r})")
    user = first.get("user")
    new_user = user is not None and "path" not in linux["namespaces"][user]
    for field in ("uidMappings", "gidMappings"):
        given = bool(linux.get(field))
        if given and user is None:
            raise ConfigError(
                f"$.linux.{field}", "given but no user namespace is requested in $.linux.namespaces"
            )
        if new_user and not given:
            raise ConfigError(
                f"$.linux.{field}",
                f"required: a new user namespace is requested at $.linux.namespaces[{user}]",
            )
    for field in ("hostname", "domainname"):
        if config.get(field) and "uts" not in first:
            raise ConfigError(
                f"$.{field}", "can only be set with a uts namespace in $.linux.namespaces"
            )


def check_semantics(config: dict[str, Any], *, require_process: bool = True) -> None:
    """The rules of the runtime spec that its JSON schema cannot express."""
    if "root" not in config:
        raise ConfigError("$.root", "is required on Linux")
    process = config.get("process")
    if process is None:
        if require_process:
            raise ConfigError("$.process", "is required to create a container")
    else:
        _check_process(process, "$.process")
    _check_mounts(config.get("mounts") or [])
    _check_namespaces(config)


def validate_config(config: Any, *, require_process: bool = True) -> None:
    """Schema then semantics; raises ConfigError naming the first problem found."""
    check_schema(config)
    check_semantics(config, require_process=require_process)


def validate_process(process: Any, where: str = "$") -> None:
    """Validate a process object on its own (`lowrun exec --process file.json`); paths in
    errors start with `where`."""
    wrapper = {"ociVersion": "1.2.0", "process": process}
    try:
        check_schema(wrapper)
    except ConfigError as exc:
        if exc.where.startswith("$.process"):
            raise ConfigError(where + exc.where[len("$.process") :], exc.problem) from None
        raise ConfigError(where, exc.problem) from None
    _check_process(process, where)


def load_process(path: str) -> dict[str, Any]:
    """Read and validate a process JSON file as `lowrun exec --process` takes it."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError("$", f"cannot read process file {path}: {exc.strerror}") from None
    process = parse_json(raw, os.path.basename(path))
    validate_process(process)
    result: dict[str, Any] = process
    return result


# --- the bundle ----------------------------------------------------------------------


def _read_config(bundle: str) -> bytes:
    config_path = os.path.join(bundle, CONFIG_NAME)
    try:
        with open(config_path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle} has no {CONFIG_NAME}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {config_path}: {exc.strerror}") from None


def _rootfs(bundle: str, config: dict[str, Any]) -> str:
    root_path: str = config["root"]["path"]
    rootfs = os.path.normpath(os.path.join(bundle, root_path))
    try:
        is_dir = os.path.isdir(rootfs)
        exists = is_dir or os.path.lexists(rootfs)
    except OSError:
        exists = is_dir = False
    if not exists:
        raise BundleError(f"rootfs {rootfs} ($.root.path) does not exist")
    if not is_dir:
        raise BundleError(f"rootfs {rootfs} ($.root.path) is not a directory")
    return rootfs


def load_bundle(path: str, *, require_process: bool = True) -> Bundle:
    """Load and validate the bundle at `path`. Nothing is created or changed on disk.

    `require_process=False` is for commands that only need the rest of the
    configuration of an existing container (hooks at delete, for example).
    """
    bundle = os.path.abspath(path)
    if not os.path.isdir(bundle):
        what = "is not a directory" if os.path.lexists(bundle) else "does not exist"
        raise BundleError(f"bundle {bundle} {what}")
    config = parse_json(_read_config(bundle))
    validate_config(config, require_process=require_process)
    return Bundle(bundle, config, _rootfs(bundle, config))
