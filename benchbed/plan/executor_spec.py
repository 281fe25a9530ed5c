"""Which executor runs a suite, and with what options: the suite's ``executor`` (else
``local``) under the command line's ``--executor``, ``--executor-opt`` and executors' shorthand flags."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from benchbed.errors import BenchbedError, did_you_mean
from benchbed.plugin_api.registry import Registry
from benchbed.suite.protocol import ComponentRef


def executor_flags(registry: Registry) -> dict[str, list[tuple[str, str]]]:
    """Every shorthand flag (without "--") -> [(executor, param)] that declare it."""
    flags: dict[str, list[tuple[str, str]]] = {}
    for name in registry.names("executor"):
        for flag, param in registry.get("executor", name).cls.cli_shorthands.items():
            flags.setdefault(flag, []).append((name, param))
    return flags


def resolve_executor(declared: ComponentRef | None, override: dict[str, Any],
                     registry: Registry) -> dict[str, Any]:
    """``declared`` merged with ``override`` (``name`` optional there), checked.

    Naming another executor in ``override`` drops the suite's options, which
    belong to the executor it named. Keys ``"--FLAG"`` in ``override`` are
    command-line shorthands, mapped through the chosen executor's
    ``cli_shorthands`` after every other option.
    """
    spec: dict[str, Any] = declared.as_dict() if declared is not None else {"name": "local"}
    if override.get("name") not in (None, spec["name"]):
        spec = {"name": override["name"]}
    flags = {k: v for k, v in override.items() if k.startswith("--")}
    spec.update({k: v for k, v in override.items() if k != "name" and k not in flags})
    name, cls = spec["name"], registry.get("executor", spec["name"]).cls
    for flag, text in flags.items():
        param = cls.cli_shorthands.get(flag[2:])
        if param is None:
            owners = [n for n, _ in executor_flags(registry).get(flag[2:], [])]
            raise BenchbedError(f"{flag} is an option of executor {' and '.join(map(repr, owners)) or '?'}, "
                                f"not of {name!r}, which runs this suite (give --executor, or "
                                f"--executor-opt KEY=VALUE for {name!r}'s own options)")
        try:  # the flag's text as its param's type ("2" -> 2); as given when it does not read, reported below
            spec[param] = TypeAdapter(cls.Params.model_fields[param].annotation).validate_python(text)
        except ValidationError:
            spec[param] = text
    try:
        cls.Params.model_validate({k: v for k, v in spec.items() if k != "name"})
    except ValidationError as exc:
        err = exc.errors()[0]
        field, allowed = ".".join(map(str, err["loc"])), list(cls.Params.model_fields)
        if err["type"] == "extra_forbidden":
            raise BenchbedError(f"executor {name!r} does not take option {field!r}"
                                f"{did_you_mean(field, allowed)} (options: {', '.join(allowed) or 'none'})"
                                ) from None
        raise BenchbedError(f"executor {name!r}: option {field}={err.get('input')!r}: {err['msg']}") from None
    return spec
