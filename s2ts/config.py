"""Configuration contract: schema validation with messages a scientist understands.

``check_config`` validates a loaded ``config.yaml`` against
``workflow/schemas/config.schema.yaml`` (unknown keys rejected, types and ranges
checked), fills the schema's defaults, then checks what a schema cannot
(calendar dates, their order, the CRS). Any problem raises one
:class:`~s2ts.errors.UserError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
from pathlib import Path

import yaml

from s2ts.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _key(path) -> str:
    parts = []
    for p in path:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
        else:
            parts.append(str(p))
    return ".".join(parts) or "(top level)"


def _subschema(schema: dict, path) -> dict:
    node = schema
    for p in path:
        if isinstance(p, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(p, {})
    return node


def _allowed(sub: dict) -> str:
    if "oneOf" in sub:
        alts = " or ".join(_allowed({k: v for k, v in alt.items()}) for alt in sub["oneOf"])
        return f"{alts} ({sub['description']})" if sub.get("description") else alts
    if "enum" in sub:
        return "one of: " + ", ".join(map(str, sub["enum"]))
    bits = []
    t = sub.get("type")
    if t:
        bits.append(f"a {' or '.join(t) if isinstance(t, list) else t}")
    if "minimum" in sub:
        bits.append(f">= {sub['minimum']}")
    if "exclusiveMinimum" in sub:
        bits.append(f"> {sub['exclusiveMinimum']}")
    if "maximum" in sub:
        bits.append(f"<= {sub['maximum']}")
    if "pattern" in sub and "YYYY" in sub.get("description", ""):
        bits.append("a date written YYYY-MM-DD")
    elif "pattern" in sub:
        bits.append(f"matching {sub['pattern']}")
    desc = sub.get("description")
    text = " ".join(bits) if bits else "a valid value"
    return f"{text} ({desc})" if desc else text


def _message(err, schema: dict) -> str:
    path = list(err.absolute_path)
    key = _key(path)
    if err.validator == "additionalProperties":
        sub = _subschema(schema, path)
        allowed = sorted(sub.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        msgs = []
        for k in extra:
            full = _key(path + [k])
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            msgs.append(
                f"unknown config key '{full}'.{hint} Allowed keys"
                f"{' under ' + key if path else ''}: {', '.join(allowed)}."
            )
        return " ".join(msgs)
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        where = f" under '{key}'" if path else ""
        sub = _subschema(schema, path + [missing])
        return f"missing config key '{missing}'{where}: it must be {_allowed(sub)}."
    if err.validator == "uniqueItems":
        return f"config key '{key}' has repeated values {err.instance!r}: list each value once."
    if err.validator == "minItems":
        return f"config key '{key}' is empty: give at least {err.validator_value} value(s)."
    sub = _subschema(schema, path)
    return f"config key '{key}' = {err.instance!r} is not allowed: it must be {_allowed(sub)}."


def _fill_defaults(config: dict, schema: dict) -> None:
    for name, sub in schema.get("properties", {}).items():
        if name not in config and "default" in sub:
            config[name] = copy.deepcopy(sub["default"])
        if isinstance(config.get(name), dict) and sub.get("type") == "object":
            _fill_defaults(config[name], sub)


def _parse_date(value: str, key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"config key '{key}' = {value!r} is not a calendar date: write it YYYY-MM-DD, e.g. \"2021-01-01\"."
        ) from None


def check_config(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config``; return a copy with defaults filled. Raise UserError."""
    import jsonschema

    schema = schema if schema is not None else load_schema()
    config = copy.deepcopy(dict(config))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        raise UserError(_message(errors[0], schema))
    _fill_defaults(config, schema)

    start = _parse_date(config["dates"]["start"], "dates.start")
    end = _parse_date(config["dates"]["end"], "dates.end")
    if start >= end:
        raise UserError(
            f"dates.start ({start}) must be before dates.end ({end}); dates.end is exclusive "
            f'(to include 31 Dec 2024, write end: "2025-01-01").'
        )
    if config["stac"]["catalog"] == "demo":
        config.setdefault("demo", {})
        _fill_defaults(config["demo"], schema["properties"]["demo"])
        d0 = _parse_date(config["demo"]["start"], "demo.start")
        d1 = _parse_date(config["demo"]["end"], "demo.end")
        if d0 >= d1:
            raise UserError(f"demo.start ({d0}) must be before demo.end ({d1}).")

    reflectance = schema["properties"]["bands"]["items"]["enum"]  # the reflectance asset keys
    if config["mask"]["band"] in reflectance:
        raise UserError(
            f"mask.band '{config['mask']['band']}' is a reflectance band: the mask band must be a scene "
            "classification band such as SCL (its classes mark clouds, shadows and no data), not a reflectance "
            "band. Set mask.band: SCL."
        )
    check_grid_crs(config["grid"]["crs"])
    return config


def check_grid_crs(crs: str):
    """Return the pyproj CRS for ``grid.crs``; it must exist and be projected in metres."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        c = CRS.from_user_input(crs)
    except CRSError:
        raise UserError(
            f"config key 'grid.crs' = {crs!r} is not a known CRS: use an authority code such as "
            "EPSG:3035 (Europe), EPSG:2154 (France) or a UTM zone such as EPSG:32630."
        ) from None
    units = {a.unit_name for a in c.axis_info}
    if not c.is_projected or units - {"metre"}:
        raise UserError(
            f"config key 'grid.crs' = {crs!r} is not a projected CRS in metres (units: "
            f"{', '.join(sorted(units)) or 'unknown'}): pick one such as EPSG:3035 or a UTM zone EPSG:326xx."
        )
    return c
