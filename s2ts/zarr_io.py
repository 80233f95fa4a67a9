"""Zarr stores of the data stages as xarray Datasets.

Stores are written with ``Dataset.to_zarr`` (Zarr v3, consolidated metadata) and read
with ``xarray.open_zarr``. Every store carries its grid's CRS: rioxarray's
``write_crs`` adds the CF grid-mapping variable ``spatial_ref`` and each gridded
variable names it in ``grid_mapping``, so
``xr.open_zarr(path, decode_coords="all").rio.crs`` is the grid's CRS. Coordinates
``x``/``y`` are pixel centres in the grid's CRS; ``time`` (batch and AOI stores) is
each date's representative acquisition time, whole seconds, UTC.

Layout and storage types, fixed across stages:

============  ==================================  =============================================
stage         store                               variables (no-data / missing)
============  ==================================  =============================================
tile          ``tile/<batch>/<date>.zarr``        ``(y, x)`` bands uint16 DN (0); ``SCL`` uint8
                                                  (0 = no data); ``SCL_any`` uint16, bit c set
                                                  when class c is in the pixel's footprint;
                                                  ``source`` uint8: index of the item each pixel
                                                  came from in ``attrs["items"]`` (255 = none)
offset_fix    ``offset_fix/<batch>.zarr``         ``(time, y, x)`` bands int16 (-32768: a
                                                  corrected DN can be <= 0), ``SCL``,
                                                  ``SCL_any``, ``source``; per date
                                                  ``item_records``, ``offset_correction`` (JSON)
mask          ``mask/<batch>.zarr``               ``(time, y, x)`` bands int16 (-32768);
                                                  ``valid_fraction(time)``, ``digest(time)``
                                                  (s2ts.mask), the per-date records
gapfill       ``gapfill.zarr``                    ``(time, y, x)`` bands int16 (-32768) and
                                                  ``flag`` uint8 (see s2ts.gapfill);
                                                  ``mask_digest(time)``, the per-date records
============  ==================================  =============================================

Per-date stores are chunked ``CHUNK`` x ``CHUNK`` in space; batch stores one date by
``CHUNK`` x ``CHUNK`` (each date is written once, and read whole by the stage after);
the gap-filled cube 16 dates by ``CHUNK`` x ``CHUNK`` (filled with all dates of a spatial
chunk at once, stored so that an update for new dates rewrites a few chunks: s2ts.gapfill).
Internally the stages open stores with ``mask_and_scale=False`` (integers with their
fill value, never floats); a user's plain ``xr.open_zarr(path)`` gets NaN for missing.

Everything is written under a temporary name beside the target and renamed into
place, so a store under its final name is complete.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np

FILL_INT16 = -32768
NO_SOURCE = 255
CHUNK = 512  # spatial chunk edge of every store
TIME_CHUNK_BYTES = 16 * 2**20
#: memory a stage may hold for one group of dates over the whole grid
GROUP_BYTES = 256 * 2**20
#: chunk files named "0.0" beside the array's zarr.json (no c/0/ folders: a third of
#: the file-system entries per store)
CHUNK_KEYS = {"name": "v2", "separator": "."}
GRID_MAPPING = "spatial_ref"
TIME_ENCODING = {"units": "seconds since 1970-01-01T00:00:00", "calendar": "proleptic_gregorian", "dtype": "int64"}


def grid_coords(grid: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre x and y of a grid description (see s2ts.aoi_grid.target_grid)."""
    r = grid["resolution"]
    x0, _, _, y1 = grid["bounds"]
    x = x0 + r * (np.arange(grid["width"]) + 0.5)
    y = y1 - r * (np.arange(grid["height"]) + 0.5)
    return x, y


def grid_crs(grid: dict):
    """The grid's pyproj CRS (its WKT when recorded, else its code)."""
    from pyproj import CRS

    return CRS.from_wkt(grid["crs_wkt"]) if grid.get("crs_wkt") else CRS.from_user_input(grid["crs"])


def grid_dataset(grid: dict):
    """An empty Dataset on the grid: ``x``/``y`` pixel-centre coordinates (CF
    attributes) and the CRS as the grid-mapping coordinate ``spatial_ref``."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    x, y = grid_coords(grid)
    ds = xr.Dataset(
        coords={
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "long_name": "x of pixel centre", "units": "m"}),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "long_name": "y of pixel centre", "units": "m"}),
        }
    )
    return ds.rio.write_crs(grid_crs(grid), grid_mapping_name=GRID_MAPPING)


def fill_value(name: str, dtype) -> int | None:
    """The no-data value of a variable: see the module table (``flag`` has none)."""
    dtype = np.dtype(dtype)
    if name == "flag":
        return None
    if name == "source":
        return NO_SOURCE
    if dtype == np.int16:
        return FILL_INT16
    return 0


def time_chunk(height: int, width: int, bytes_per_pixel: int = 16) -> int:
    """Dates per chunk of a batch store: about :data:`TIME_CHUNK_BYTES` of int16 per
    chunk (a small AOI's whole batch is one chunk: few files, one read), and no more
    dates than fit :data:`GROUP_BYTES` over the whole grid (a stage holds a chunk's
    dates in memory, ``bytes_per_pixel`` per pixel and date)."""
    per_chunk = TIME_CHUNK_BYTES // (2 * min(height, CHUNK) * min(width, CHUNK))
    per_group = GROUP_BYTES // max(1, height * width * bytes_per_pixel)
    return max(1, min(per_chunk, per_group))


def _encoding(ds, time_chunk_size: int | None = None, chunks: dict | None = None) -> dict:
    """Per-variable encoding: grid mapping, zstd, fill value and chunks (``CHUNK`` x
    ``CHUNK`` in space; ``time_chunk_size`` dates, default :func:`time_chunk`; the
    stored chunks of some variables set by ``chunks``, ``{name: shape}``)."""
    import zarr

    flat = {"chunk_key_encoding": CHUNK_KEYS}
    enc = {name: dict(flat) for name in ds.coords}
    nt = time_chunk_size or (time_chunk(ds.sizes.get("y", 1), ds.sizes.get("x", 1)) if "time" in ds.dims else 1)
    for name, var in ds.data_vars.items():
        e = dict(flat)
        if "y" in var.dims and "x" in var.dims:
            e["grid_mapping"] = GRID_MAPPING
            e["compressors"] = zarr.codecs.ZstdCodec(level=3)
            e["_FillValue"] = fill_value(name, var.dtype)
            if var.chunks is None:  # numpy: chunk here; dask arrays keep their own chunks
                want = {"y": CHUNK, "x": CHUNK, "time": nt}
                e["chunks"] = tuple(max(1, min(want.get(d, n), n)) for d, n in var.sizes.items())
        enc[name] = e
    if "time" in ds.coords:
        enc["time"].update(TIME_ENCODING)
    for name, shape in (chunks or {}).items():
        enc[name]["chunks"] = tuple(shape)
    return enc


def _plain_attrs(ds):
    """A shallow copy without ``_FillValue`` attributes (stores opened as written
    carry it as an attribute; the encoding sets it)."""
    ds = ds.copy()
    for var in ds.variables.values():
        var.attrs = {k: v for k, v in var.attrs.items() if k != "_FillValue"}
    return ds


@contextlib.contextmanager
def _quiet():
    """Silence zarr's notice that consolidated metadata is not yet in the Zarr v3 spec:
    stores are written consolidated so that xarray opens them in one read, without
    warning the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


#: a store of at most this many bytes (in memory, uncompressed) is written in memory
#: first (:func:`write_dataset`)
BUFFERED_BYTES = 64 * 2**20


def _persist(keys: dict, root: Path) -> None:
    """Write the keys of a Zarr store held in a ``zarr.storage.MemoryStore`` as the
    files of a local store: key ``a/b`` is the file ``root/a/b``, the layout of
    ``zarr.storage.LocalStore``."""
    root.mkdir(parents=True)
    files = {key: root.joinpath(*key.split("/")) for key in keys}
    for folder in sorted({f.parent for f in files.values()} - {root}):
        folder.mkdir(parents=True, exist_ok=True)
    for key, buf in keys.items():
        files[key].write_bytes(buf.to_bytes())


#: ``[(layout, keys)]``: the keys of the last buffered store ``to_zarr`` wrote in this
#: process and its :func:`_layout`, one tuple replaced whole (threads see a consistent
#: pair); :func:`write_dataset` reuses them for a store of the same layout
_TEMPLATE: list = []


def _layout(ds):
    """Everything but the data variables' values and the root attributes' values
    that decides the keys ``to_zarr`` writes for ``ds`` (with :func:`_encoding`):
    the variables' names, dimensions, types, shapes, attributes and encodings, the
    coordinates' values, and the root attributes' names in order. None when a data
    variable is not an integer array: xarray's CF encoding could change its values
    (NaN to a fill value, datetimes, scaling), which a template cannot repeat."""
    layout = [tuple(ds.attrs)]
    for name, var in ds.variables.items():
        data = name in ds.data_vars
        if data and (var.dtype.kind not in "iu" or {"dtype", "scale_factor", "add_offset"} & set(var.encoding)):
            return None
        values = None if data else var.values.tobytes()
        layout.append((name, data, var.dims, var.dtype.str, var.shape, repr(var.attrs), repr(var.encoding), values))
    return tuple(layout)


async def _swap_values(keys: dict, ds) -> None:
    """Put ``ds``'s data variables and root attributes into ``keys``, a copy of the
    keys of a store of the same :func:`_layout`: zarr encodes and chunks each array
    as the template's array metadata says (a chunk of fill values only is dropped,
    as ``to_zarr`` drops it), the root attributes are encoded as xarray encodes
    them, in their order; the consolidated metadata of the arrays is unchanged."""
    import asyncio

    import zarr
    from xarray.backends.zarr import encode_zarr_attr_value
    from zarr.storage import MemoryStore

    group = await zarr.api.asynchronous.open_group(store=MemoryStore(keys), mode="r+", use_consolidated=True)
    names = list(ds.data_vars)
    arrays = await asyncio.gather(*(group.getitem(n) for n in names))
    await asyncio.gather(*(a.setitem(Ellipsis, ds[n].values) for a, n in zip(arrays, names)))
    await group.update_attributes({k: encode_zarr_attr_value(v) for k, v in ds.attrs.items()})


def write_dataset(ds, path, chunks: dict | None = None) -> None:
    """Write ``ds`` to the Zarr store ``path`` atomically (temporary name, then renamed).

    Gridded variables get the grid mapping, zstd compression, their fill value and
    ``CHUNK`` x ``CHUNK`` spatial chunks (one date per chunk along ``time`` unless the
    variables are dask arrays, which keep their chunks). ``chunks``: the stored chunks
    of some variables, ``{name: chunk shape}`` (each a whole number of dask chunks'
    worth of stored chunks, as ``to_zarr`` requires).

    A small in-memory Dataset (numpy arrays, at most :data:`BUFFERED_BYTES`: a
    per-date tile) is written by ``to_zarr`` into a ``zarr.storage.MemoryStore`` and
    its keys are then written as files (:func:`_persist`): the same store, file for
    file, in 14-19 ms instead of 28-45 ms per tile store, because zarr-python 3's
    ``LocalStore`` hands each of the store's ~20 small writes from the event loop to
    a thread (docs/performance.md).

    The next buffered store of the same :func:`_layout` (the next date of a tile
    batch: same grid, variables and attribute names) starts from the keys of that
    one: zarr writes its arrays' chunks and its root attributes into a copy of them,
    in one call to zarr's event loop (:func:`_swap_values`), and the other keys
    (array metadata, coordinates, the consolidated metadata) are the ones ``to_zarr``
    wrote: file for file what ``to_zarr`` writes, in 6 ms instead of 18-20 per tile
    store, written files included (``benchmarks/tile_writes.py``)."""
    from zarr.core.sync import sync
    from zarr.storage import MemoryStore

    from s2ts.io import atomic_path

    ds = _plain_attrs(ds)
    with atomic_path(path) as tmp, _quiet():
        buffered = ds.nbytes <= BUFFERED_BYTES and not any(v.chunks for v in ds.variables.values())
        if not buffered:
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True, encoding=_encoding(ds, chunks=chunks))
            return
        layout = _layout(ds)
        held = next(iter(_TEMPLATE[-1:]), (None, None))  # a slice: atomic
        if layout is not None and held[0] == layout:
            keys = dict(held[1])
            sync(_swap_values(keys, ds))
        else:
            keys = {}
            ds.to_zarr(MemoryStore(keys), mode="w", zarr_format=3, consolidated=True, encoding=_encoding(ds))
            _TEMPLATE[:] = [(layout, keys)] if layout is not None else []  # never changed after: each use copies
        _persist(keys, Path(tmp))


def create_store(ds, path, chunks: dict | None = None) -> None:
    """Create the Zarr store ``path`` for ``ds`` as :func:`write_dataset` would write it
    (same encoding, ``chunks`` as there), with its coordinates and in-memory variables
    but none of its dask variables' chunks: the caller writes those
    (``zarr.open_array``), then calls :func:`consolidate`. Not atomic by itself: for a
    temporary path (s2ts.io.atomic_path)."""
    ds = _plain_attrs(ds)
    with _quiet():
        ds.to_zarr(
            path, mode="w", zarr_format=3, consolidated=True, encoding=_encoding(ds, chunks=chunks), compute=False
        )


def consolidate(path) -> None:
    """Consolidate the metadata of the Zarr store ``path`` (one read to open it)."""
    import zarr

    with _quiet():
        zarr.consolidate_metadata(str(path), zarr_format=3)


def write_batches(groups, path) -> None:
    """Write a ``(time, y, x)`` store from consecutive groups of dates (Datasets along
    ``time``, each computed in memory): the first creates the store with a time chunk
    of its size, the others are appended along ``time``; atomic as a whole. Groups of
    equal size (but the last) append whole chunks, so no chunk is written twice."""
    from s2ts.io import atomic_path

    with atomic_path(path) as tmp, _quiet():
        for k, ds in enumerate(groups):
            ds = _plain_attrs(ds)
            if k == 0:
                enc = _encoding(ds, ds.sizes["time"])  # the first group is one time chunk
                ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True, encoding=enc)
            else:
                ds.to_zarr(tmp, mode="a", append_dim="time", zarr_format=3, consolidated=True)


def open_dataset(path, chunks=None, indexes=True):
    """A store as written (integers with their fill values, the CRS as ``spatial_ref``).

    ``chunks=None`` reads numpy arrays on access; ``chunks={}`` gives dask arrays with
    the store's own chunks. ``indexes=False``: no pandas index for ``x``/``y`` (the
    coordinates are there as values): a stage that stacks many per-date stores of one
    grid opens each in 2-3 ms instead of 4-6."""
    import xarray as xr

    if not Path(path).exists():
        raise FileNotFoundError(path)
    return xr.open_zarr(
        path,
        decode_coords="all",
        mask_and_scale=False,
        chunks=chunks,
        consolidated=True,
        create_default_indexes=indexes,
    )


async def _read_data_vars(paths, names):
    """Every array ``names`` of every store ``paths``, all read concurrently."""
    import asyncio

    import zarr

    async def one(path):
        group = await zarr.api.asynchronous.open_group(store=str(path), mode="r", use_consolidated=True)
        arrays = await asyncio.gather(*(group.getitem(n) for n in names))
        return await asyncio.gather(*(a.getitem(Ellipsis) for a in arrays))

    return await asyncio.gather(*(one(p) for p in paths))


def stack_dates(paths):
    """Per-date stores of one grid (the tile stage's), their data variables stacked
    along a new first dimension ``time`` in the order given: what
    ``xr.concat([open_dataset(p, indexes=False) for p in paths], dim="time",
    coords="minimal", compat="override")`` gives (the first store's coordinates,
    variable attributes, encodings and root attributes), with the values read by
    zarr in one call of its event loop instead of one call per store and array
    (70 stores: 0.28-0.32 s against 0.39-0.45 s, docs/performance.md). A store
    whose variables differ from the first's in name, type or shape is refused."""
    import xarray as xr
    from zarr.core.sync import sync

    paths = list(paths)
    first = open_dataset(paths[0], indexes=False)
    names = list(first.data_vars)
    values = sync(_read_data_vars(paths, names))
    for path, arrays in zip(paths, values):
        for n, a in zip(names, arrays):
            if a.dtype != first[n].dtype or a.shape != first[n].shape:
                raise ValueError(
                    f"{path}: {n} is {a.dtype} {a.shape}, not {first[n].dtype} {first[n].shape} as in {paths[0]}: "
                    "per-date stores of one batch share one grid and one recipe"
                )
    ds = xr.Dataset(coords=first.coords, attrs=first.attrs)
    for k, n in enumerate(names):
        var = first[n].variable
        stacked = np.stack([arrays[k] for arrays in values])
        for arrays in values:
            arrays[k] = None  # each date's copy goes as soon as it is stacked: at most one variable twice
        ds[n] = xr.Variable(("time", *var.dims), stacked, var.attrs, var.encoding)
    return ds


def read_attrs(path) -> dict:
    """A store's attributes, from its Zarr v3 metadata document (no array opened)."""
    meta = Path(path) / "zarr.json"
    if not meta.exists():
        raise FileNotFoundError(path)
    return json.loads(meta.read_text()).get("attributes", {})


def to_datetime64(seconds) -> np.ndarray:
    """int64 seconds since 1970-01-01 UTC -> datetime64[ns]."""
    return (np.asarray(seconds, dtype="int64") * 1_000_000_000).astype("datetime64[ns]")


def to_seconds(times) -> np.ndarray:
    """datetime64 -> int64 seconds since 1970-01-01 UTC (fractions dropped)."""
    return np.asarray(times).astype("datetime64[s]").astype("int64")


def record_json(obj) -> str:
    """Deterministic compact JSON for the per-date text variables."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
