"""Reading an ``--accelerate-config`` file with limits: size, YAML aliases, nesting, and the type of every value.

An accelerate config is a few dozen lines of plain settings, so anything far from that is refused before it can
cost memory or time: files over ``MAX_BYTES`` are not parsed; YAML aliases (``*name``, the "billion laughs"
expansion, https://en.wikipedia.org/wiki/Billion_laughs_attack) and nesting deeper than ``MAX_DEPTH`` stop the
parser at the first one; and every value is checked against the type accelerate's ``ClusterConfig`` declares
before accelerate reads it, so a wrong type is one line naming the file, the key and what it accepts, never a
traceback. Values quoted in messages are cut short (a 400-byte file can hold a megabytes-long value).
"""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path

from .distributed.environment import LaunchConfigError

MAX_BYTES = 64 * 1024   # the shipped configs are under 2 KiB
MAX_INT = 1 << 20       # process and machine counts, ranks, ports
MAX_DEPTH = 20          # accelerate's settings nest two levels (fsdp_config: {...})


def short(value, limit: int = 80) -> str:
    """``repr(value)`` for an error line, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Refused(Exception):
    def __init__(self, what: str, mark):
        super().__init__(what)
        self.what, self.mark = what, mark


def _loader():
    """PyYAML's SafeLoader (no Python tags) that also stops at the first alias and at deep nesting."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise _Refused("a YAML alias (*name): aliases are not accepted here; write the values out",
                               self.peek_event().start_mark)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nesting deeper than {MAX_DEPTH} levels: not an accelerate config",
                               self.peek_event().start_mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def read_settings(file: Path, where: str, shipped: str) -> dict:
    """The file as a mapping of settings for the local machine, read within the limits above."""
    import yaml

    try:
        with open(file, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # never more than the limit, whatever the file claims to be
    except OSError as exc:
        raise LaunchConfigError(f"{where}: cannot be read ({exc.strerror}); check the path and its permissions.") from None
    if len(data) > MAX_BYTES:
        raise LaunchConfigError(f"{where}: larger than {MAX_BYTES // 1024} KiB, not an accelerate config (those are a "
                                f"few dozen lines); give the right file, e.g. a shipped config{shipped}.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LaunchConfigError(f"{where}: not a text file; give an accelerate config YAML.") from None
    try:
        raw = yaml.load(text, Loader=_loader())  # noqa: S506  (a SafeLoader subclass)
    except _Refused as exc:
        raise LaunchConfigError(f"{where}: line {exc.mark.line + 1}, column {exc.mark.column + 1}: {exc.what}; "
                                f"start from a shipped config{shipped}.") from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:  # ValueError: an int past Python's digit limit
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or type(exc).__name__).split())[:120]
        raise LaunchConfigError(f"{where}: not valid YAML{at} ({problem}); fix the syntax, or start from a "
                                f"shipped config{shipped}.") from None
    if not isinstance(raw, dict):
        raise LaunchConfigError(f"{where}: holds {type(raw).__name__}, not a mapping of accelerate settings "
                                "(distributed_type: ..., num_processes: ...); write `accelerate config` or copy a "
                                f"shipped config{shipped}.")
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise LaunchConfigError(f"{where}: the key {short(bad_keys[0])} is not a name; keys are accelerate setting "
                                "names such as num_processes.")
    env = raw.get("compute_environment", "LOCAL_MACHINE")
    if env != "LOCAL_MACHINE":
        raise LaunchConfigError(f"{where}: compute_environment {short(env)}: projbench launches on your own machines "
                                "only; set compute_environment: LOCAL_MACHINE.")
    return raw


def _accepted(tp) -> tuple[tuple[type, ...], str]:
    """The Python types a YAML value may have for a field declared ``tp``, and how to say so."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        parts = [_accepted(a) for a in typing.get_args(tp) if a is not type(None)]
        kinds = tuple(t for p in parts for t in p[0]) + (type(None),)
        return kinds, " or ".join(dict.fromkeys(p[1] for p in parts))
    origin = typing.get_origin(tp) or tp
    if isinstance(origin, type) and issubclass(origin, enum.Enum):
        return (str,), "one of " + ", ".join(str(e.value) for e in origin)
    return {int: ((int,), "a whole number"), bool: ((bool,), "true or false"), str: ((str,), "a quoted string"),
            float: ((int, float), "a number"), dict: ((dict,), "a mapping (indented key: value lines)"),
            list: ((list,), "a list of strings")}.get(origin, ((object,), "any value"))


def check_types(settings: dict, config_class, where: str, driven: tuple[str, ...]) -> None:
    """Each value has the type ``config_class`` (accelerate's ClusterConfig) declares for its key."""
    from accelerate.utils import DistributedType

    kind = settings.get("distributed_type")
    if not isinstance(kind, str) or kind not in {t.value for t in DistributedType}:
        raise LaunchConfigError(f"{where}: distributed_type {short(kind)} is not one accelerate knows; projbench "
                                f"drives {', '.join(driven)}.")
    for key, value in settings.items():
        if key in ("distributed_type", "compute_environment") or key not in config_class.__dataclass_fields__:
            continue  # checked above / an unknown key, named by the caller
        kinds, says = _accepted(config_class.__dataclass_fields__[key].type)
        wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if not wrong and isinstance(value, list):
            wrong = not all(isinstance(v, str) for v in value)
        if not wrong and isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise LaunchConfigError(f"{where}: {key} is {short(value)}, far past any machine's count or port; give "
                                    "the real number.")
        if wrong:
            hint = " (YAML reads an unquoted yes/no/on/off as true/false: quote it)" if isinstance(value, bool) else ""
            raise LaunchConfigError(f"{where}: {key} is {short(value)} ({type(value).__name__}){hint}; accelerate "
                                    f"accepts {says} there.")
