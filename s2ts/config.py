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

DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


#: libyaml's safe loader when PyYAML has it (10x faster: every run parses the schema)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text_or_file):
    """``yaml.safe_load`` with :data:`SAFE_LOADER`."""
    return yaml.load(text_or_file, Loader=SAFE_LOADER)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return load_yaml(f)


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


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _allowed(sub: dict) -> str:
    if "oneOf" in sub:
        alts = " or ".join(_allowed({k: v for k, v in alt.items()}) for alt in sub["oneOf"])
        return f"{alts} ({sub['description']})" if sub.get("description") else alts
    if "enum" in sub:
        return "one of: " + ", ".join(map(str, sub["enum"]))
    bits = []
    t = sub.get("type")
    date = sub.get("pattern") == DATE_PATTERN
    if date:
        bits.append('a date written "YYYY-MM-DD", in quotes')
    elif t:
        bits.append(" or ".join(_a(x) for x in t) if isinstance(t, list) else _a(t))
    if "minimum" in sub:
        bits.append(f">= {sub['minimum']}")
    if "exclusiveMinimum" in sub:
        bits.append(f"> {sub['exclusiveMinimum']}")
    if "maximum" in sub:
        bits.append(f"<= {sub['maximum']}")
    if "pattern" in sub and not date:
        bits.append(f"matching {sub['pattern']}")
    desc = sub.get("description")
    text = " ".join(bits) if bits else "a valid value"
    return f"{text} ({desc})" if desc else text


def _unquoted(key: str, value, sub: dict) -> str | None:
    """The message for a value YAML read as a date or a number where text is expected."""
    if sub.get("type") != "string" or isinstance(value, str):
        return None
    name = key.rsplit(".", 1)[-1]
    if isinstance(value, dt.date):  # YAML turns an unquoted 2021-01-01 into a date
        return (
            f"config key '{key}' = {value.isoformat()} is written without quotes, so YAML reads it as a date, "
            f'not as text: quote it, {name}: "{value.isoformat()[:10]}".'
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        example = f', e.g. {name}: "{sub["default"]}"' if "default" in sub else ""
        return (
            f"config key '{key}' = {value} is written without quotes, so YAML reads it as a number, not as "
            f"text: quote it{example}. It must be {_allowed(sub)}."
        )
    return None


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
    unquoted = _unquoted(key, err.instance, sub)
    if unquoted:
        return unquoted
    return f"config key '{key}' = {err.instance!r} is not allowed: it must be {_allowed(sub)}."


def _fill_defaults(config: dict, schema: dict) -> None:
    for name, sub in schema.get("properties", {}).items():
        if name not in config and "default" in sub:
            config[name] = copy.deepcopy(sub["default"])
        kinds = sub.get("type")
        if isinstance(config.get(name), dict) and "object" in (kinds if isinstance(kinds, list) else [kinds]):
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
    if config.get("regular", 0) is None:  # `regular: null` switches it off, as when absent
        del config["regular"]

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
    check_indices(config["indices"], config["bands"])
    check_grid_crs(config["grid"]["crs"])
    check_results(config["results"])
    return config


def check_indices(indices, bands) -> None:
    """Every index's two bands must be in ``bands``: one message naming each index,
    the band it lacks and the fix."""
    from s2ts.indices import INDICES, missing_bands

    lacking = missing_bands(indices, bands)
    if not lacking:
        return
    needed = list(dict.fromkeys(b for lack in lacking.values() for b in lack))
    what = "; ".join(f"{name} = {INDICES[name].formula} needs {', '.join(lack)}" for name, lack in lacking.items())
    fixed = list(bands) + needed
    raise UserError(
        f"indices: {what}, not in bands [{', '.join(bands)}]. Add {' and '.join(needed)} to bands "
        f"(bands: [{', '.join(fixed)}]) or remove {', '.join(lacking)} from indices."
    )


def check_results(results: str) -> None:
    """``results`` must be a folder, or not exist yet (Snakemake creates it)."""
    path = Path(results)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == path else f"is under '{part}', which is a file"
                raise UserError(
                    f"results: '{results}' {what}, not a folder. Point results at a folder (it is "
                    "created if missing) or move the file away."
                )
            return


def key_source(layers: list[tuple[str, dict]], key: str) -> str | None:
    """Which configuration layer sets a key (``"aoi.path"``): the label of the last
    of ``layers`` (lowest precedence first, like Snakemake merges them) that holds it."""
    found = None
    for label, layer in layers:
        node = layer
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found = label
    return found


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
