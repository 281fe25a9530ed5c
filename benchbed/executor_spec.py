"""Which executor runs a suite, and with what options: the suite's own
``executor`` (else ``local``), with the command line's choices on top."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from benchbed.errors import BenchbedError, did_you_mean
from benchbed.plugins import Registry
from benchbed.suite import ComponentRef


def resolve_executor(declared: ComponentRef | None, override: dict[str, Any],
                     registry: Registry) -> dict[str, Any]:
    """``declared`` merged with ``override`` (``name`` optional there), checked.

    Naming another executor in ``override`` drops the suite's options, which
    belong to the executor it named.
    """
    spec: dict[str, Any] = declared.as_dict() if declared is not None else {"name": "local"}
    name = override.get("name")
    if name is not None and name != spec["name"]:
        spec = {"name": name}
    spec.update({k: v for k, v in override.items() if k != "name"})
    _check(spec, registry)
    return spec


def _check(spec: dict[str, Any], registry: Registry) -> None:
    cls = registry.get("executor", spec["name"]).cls
    try:
        cls.Params.model_validate({k: v for k, v in spec.items() if k != "name"})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(map(str, err["loc"]))
        allowed = list(cls.Params.model_fields)
        if err["type"] == "extra_forbidden":
            raise BenchbedError(f"executor {spec['name']!r} does not take option {field!r}"
                                f"{did_you_mean(field, allowed)} (options: {', '.join(allowed) or 'none'})"
                                ) from None
        raise BenchbedError(f"executor {spec['name']!r}: option {field}={err.get('input')!r}: "
                            f"{err['msg']}") from None
