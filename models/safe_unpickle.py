"""Read a pickled PyTorch checkpoint (torch zip format) without executing anything from it.

``torch.load(..., weights_only=True)`` refuses files that pickle whole objects, such as Ultralytics' ``.pt`` files
(a ``dict`` holding an ``ultralytics.nn.tasks.PoseModel``), and a plain ``torch.load`` runs whatever callables the
pickle names. This module reads such files as *data*:

* Globals (``GLOBAL``/``STACK_GLOBAL``/``INST``/``OBJ``/``EXT*`` opcodes, all of which go through ``find_class``)
  resolve to real objects only for a short whitelist (``_SAFE_GLOBALS``): tensor rebuilders of our own (never
  torch's), typed storage markers, ``collections.OrderedDict``, ``set``/``frozenset``, ``torch.Size`` and the
  ``torch`` dtypes. Every other name resolves to an **inert placeholder class**: instantiating it (``NEWOBJ``,
  ``REDUCE``, ``INST``/``OBJ``), calling an instance, ``BUILD``-ing it or appending/setting items on it only
  *records* what the pickle asked for (``PickledObject``). No function or class named by the file is imported,
  looked up, or called; ``os.system`` in a pickle becomes a ``PickledObject`` whose ``class_path`` is
  ``"posix.system"`` and whose ``args`` are the would-be command.
* The opcodes that change an existing object (``BUILD``, ``SETITEM(S)``, ``APPEND(S)``, ``ADDITEMS``) are allowed
  only on records and on the plain containers they are meant for, so no ``__setstate__`` of a real class (a
  tensor's, say) ever runs. This needs the pure-Python unpickler (``pickle._Unpickler``, whose dispatch table can
  be overridden); it reads Ultralytics' 330 KB ``yolo11n-pose.pt`` pickle in ~0.1 s.
* Storages come from the zip's ``<archive>/data/<key>`` records via ``persistent_load`` (only the
  ``("storage", type, key, location, numel)`` form torch writes); tensors are views into them, rebuilt by
  ``_rebuild_tensor_v2``/``_rebuild_parameter`` of this module (which check their argument types). Parameters come
  back as plain tensors, on the CPU, ``requires_grad=False``.

The output is nested plain data (dicts, lists, tuples, numbers, strings), ``torch.Tensor``s and
``PickledObject`` records. Format references: the ``pickle`` module's opcode documentation (``pickletools``),
``torch/serialization.py`` (``_save`` writes ``data.pkl``, ``data/<key>``, ``byteorder``; ``persistent_id`` gives
``("storage", storage_type, key, location, numel)``) and ``torch/_utils.py`` (``_rebuild_tensor_v2(storage,
storage_offset, size, stride, requires_grad, backward_hooks, metadata=None)``).

Example::

    >>> import io, torch
    >>> buf = io.BytesIO(); torch.save({"w": torch.arange(3.0)}, buf)
    >>> read_torch_pickle(buf.getvalue(), source="<buffer>")["w"]
    tensor([0., 1., 2.])
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import torch

__all__ = [
    "UnsafeCheckpointError",
    "PickledObject",
    "read_torch_pickle",
    "load_torch_pickle",
    "iter_pickled_objects",
]


class UnsafeCheckpointError(ValueError):
    """A torch pickle could not be read as data (corrupt, unsupported, or misusing a whitelisted name); the
    message names the file. Nothing from the file was executed."""


class PickledObject:
    """What a pickle asked to construct, recorded instead of constructed.

    Attributes:
        class_path: dotted name of the class or function the pickle named (``"torch.nn.modules.conv.Conv2d"``,
            ``"os.system"``, …); never imported.
        args: positional arguments of the construction or call (``NEWOBJ``/``REDUCE``/``INST``), a tuple.
        kwargs: keyword arguments (``NEWOBJ_EX``), a dict.
        state: what ``BUILD`` handed to ``__setstate__`` (for an ``nn.Module``, its ``__dict__`` as a dict), or None.
        list_items: items appended by ``APPEND(S)`` (list subclasses), a list.
        dict_items: items set by ``SETITEM(S)`` (dict subclasses), a dict.

    When the pickle *calls* a record (``REDUCE`` with a record as the callable, e.g. the result of a recorded
    ``getattr``), the result is another record whose ``class_path`` is ``"<call>"`` and ``args[0]`` the callee.
    Records are read-only (no attribute can be set) and cannot be pickled again.
    """

    _class_path = "<unknown>"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        self = object.__new__(cls)
        object.__setattr__(
            self,
            "_record",
            {"args": tuple(args), "kwargs": dict(kwargs), "state": None, "list_items": [], "dict_items": {}},
        )
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE/INST call the class: record only (in __new__)
        pass

    # --- the protocol hooks pickle uses, all recording only -------------------------------------------------
    def __setstate__(self, state: Any) -> None:
        self._record["state"] = state

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"PickledObject({self.class_path}) is a read-only record")

    def append(self, item: Any) -> None:
        self._record["list_items"].append(item)

    def extend(self, items: Any) -> None:
        self._record["list_items"].extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._record["dict_items"][key] = value

    def __call__(self, *args: Any, **kwargs: Any) -> PickledObject:
        return _placeholder_class("<call>")(self, *args, **kwargs)

    # --- reading -------------------------------------------------------------------------------------------
    @property
    def class_path(self) -> str:
        return type(self)._class_path

    @property
    def args(self) -> tuple:
        return self._record["args"]

    @property
    def kwargs(self) -> dict:
        return self._record["kwargs"]

    @property
    def state(self) -> Any:
        return self._record["state"]

    @property
    def list_items(self) -> list:
        return self._record["list_items"]

    @property
    def dict_items(self) -> dict:
        return self._record["dict_items"]

    def get(self, key: str, default: Any = None) -> Any:
        """``state[key]`` when the state is a dict (an object's ``__dict__``), else ``default``."""
        st = self._record["state"]
        return st.get(key, default) if isinstance(st, dict) else default

    def __reduce__(self):  # a record must never be re-pickled into a call of the original class
        raise TypeError(f"PickledObject({self.class_path}) is a read-only record and cannot be pickled")

    def __repr__(self) -> str:
        return f"PickledObject({self.class_path})"


_PLACEHOLDERS: dict[str, type] = {}


def _placeholder_class(path: str) -> type:
    """The inert stand-in for the global ``path`` (one class per name; nothing is imported)."""
    cls = _PLACEHOLDERS.get(path)
    if cls is None:
        cls = type(f"Inert[{path}]", (PickledObject,), {"_class_path": path, "__slots__": ()})
        _PLACEHOLDERS[path] = cls
    return cls


# ----------------------------------------------------------------------------------------- whitelisted names


class _StorageType:
    """Marker for a legacy typed storage class named in a persistent id (``torch.FloatStorage`` …)."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}


class _Storage:
    """A storage read from the zip: a flat CPU tensor of its dtype (``numel`` elements)."""

    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, tuple) or not all(type(v) is int for v in x):
        raise UnsafeCheckpointError(f"tensor {what} must be a tuple of ints, got {type(x).__name__}")
    return x


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """Our stand-in for ``torch._utils._rebuild_tensor_v2``: a strided view of a storage read from the zip.

    ``requires_grad``, ``backward_hooks`` and ``metadata`` are ignored (hooks are never attached or called).
    """
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError(f"tensor storage must come from the archive, got {type(storage).__name__}")
    if type(storage_offset) is not int:
        raise UnsafeCheckpointError(f"tensor storage offset must be an int, got {type(storage_offset).__name__}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise UnsafeCheckpointError(f"tensor size {size} and stride {stride} differ in length")
    flat = storage.flat
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
        raise UnsafeCheckpointError(f"negative tensor size/stride/offset: {size} {stride} {storage_offset}")
    if all(s > 0 for s in size):
        last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= flat.numel():
            raise UnsafeCheckpointError(
                f"tensor of size {size} stride {stride} offset {storage_offset} reads past its storage "
                f"({flat.numel()} elements)"
            )
    return flat.as_strided(size, stride, storage_offset)


def _rebuild_parameter(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    """Our stand-in for ``torch._utils._rebuild_parameter(_with_state)``: the plain tensor (no Parameter, no hooks)."""
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError(f"parameter data must be a tensor, got {type(data).__name__}")
    return data


def _size(*args: Any) -> torch.Size:
    if len(args) > 1 or (args and not isinstance(args[0], (tuple, list))):
        raise UnsafeCheckpointError("torch.Size takes one tuple of ints")
    return torch.Size(_int_tuple(tuple(args[0]) if args else (), "torch.Size"))


def _safe_container(kind: type) -> Any:
    def make(*args: Any) -> Any:
        if len(args) > 1:
            raise UnsafeCheckpointError(f"{kind.__name__} takes at most one iterable")
        if args and not isinstance(args[0], (list, tuple, set, frozenset, dict)):
            # an iterable of our own making only: never iterate a recorded object (its __iter__ is object's).
            raise UnsafeCheckpointError(f"{kind.__name__} of {type(args[0]).__name__} refused")
        return kind(*args)

    make.__name__ = kind.__name__
    return make


def _dtype_global(name: str) -> torch.dtype | None:
    v = getattr(torch, name, None)
    return v if isinstance(v, torch.dtype) else None


# (module, name) → object. Python 2 names (``__builtin__``) are what protocol-2 pickles write; the C unpickler
# passes them to ``find_class`` unmapped.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _size,
    ("collections", "OrderedDict"): _safe_container(collections.OrderedDict),
    **{("torch", name): _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()},
}
for _mod in ("builtins", "__builtin__"):
    _SAFE_GLOBALS[(_mod, "set")] = _safe_container(set)
    _SAFE_GLOBALS[(_mod, "frozenset")] = _safe_container(frozenset)


class _SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (``pickle._Unpickler``) with ``find_class``/``persistent_load`` restricted and the
    opcodes that mutate an existing object (``BUILD``, ``SETITEM(S)``, ``APPEND(S)``, ``ADDITEMS``) allowed only on
    ``PickledObject`` records and on the plain containers they are meant for. The Python implementation is used
    because its dispatch table can be overridden; the C one (``pickle.Unpickler``) would run, e.g., a tensor's own
    ``__setstate__`` on ``BUILD``."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._source = archive, prefix, source
        self._storages: dict[str, _Storage] = {}

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, PickledObject) or isinstance(inst, type):
            raise UnsafeCheckpointError(f"BUILD (set state) on a {type(inst).__name__} refused")
        inst.__setstate__(state)

    dispatch[pickle.BUILD[0]] = _load_build

    def _check_target(self, target: Any, kinds: tuple[type, ...], op: str) -> None:
        if isinstance(target, type) or not isinstance(target, (PickledObject, *kinds)):
            raise UnsafeCheckpointError(f"{op} on a {type(target).__name__} refused")

    def _load_setitem(self) -> None:
        self._check_target(self.stack[-3], (dict,), "SETITEM")
        pickle._Unpickler.load_setitem(self)

    def _load_setitems(self) -> None:
        self._check_target(self._marked_target(), (dict,), "SETITEMS")
        pickle._Unpickler.load_setitems(self)

    def _load_append(self) -> None:
        self._check_target(self.stack[-2], (list,), "APPEND")
        pickle._Unpickler.load_append(self)

    def _load_appends(self) -> None:
        self._check_target(self._marked_target(), (list,), "APPENDS")
        pickle._Unpickler.load_appends(self)

    def _load_additems(self) -> None:
        self._check_target(self._marked_target(), (set,), "ADDITEMS")
        pickle._Unpickler.load_additems(self)

    def _marked_target(self) -> Any:
        # pickle._Unpickler keeps the items pushed since the last MARK on self.stack and the older stack on
        # self.metastack; the object the items go into is on top of the older stack.
        if not self.metastack or not self.metastack[-1]:
            raise UnsafeCheckpointError("MARK-ed opcode without a target")
        return self.metastack[-1][-1]

    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.APPENDS[0]] = _load_appends
    dispatch[pickle.ADDITEMS[0]] = _load_additems

    def find_class(self, module: str, name: str) -> Any:
        obj = _SAFE_GLOBALS.get((module, name))
        if obj is not None:
            return obj
        if module == "torch":
            dt = _dtype_global(name)
            if dt is not None:
                return dt
        return _placeholder_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unsupported persistent id {pid!r:.80} (only torch storages are read)")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise UnsafeCheckpointError(f"storage type {stype!r:.80} is not a known torch storage type")
        if not isinstance(key, str) or not key.isalnum() or type(numel) is not int or numel < 0:
            raise UnsafeCheckpointError(f"malformed storage record {pid!r:.120}")
        cached = self._storages.get(key)
        if cached is not None:
            return cached
        name = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise UnsafeCheckpointError(f"storage record {name} is missing from the archive") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise UnsafeCheckpointError(f"storage record {name} is compressed; torch writes them stored")
        itemsize = torch.empty((), dtype=stype.dtype).element_size()
        if info.file_size < numel * itemsize:
            raise UnsafeCheckpointError(
                f"storage record {name} holds {info.file_size} bytes, {numel} × {itemsize} expected"
            )
        raw = bytearray(self._archive.read(name)[: numel * itemsize])
        flat = torch.frombuffer(raw, dtype=stype.dtype) if numel else torch.empty(0, dtype=stype.dtype)
        st = _Storage(flat)
        self._storages[key] = st
        return st


def read_torch_pickle(data: bytes, *, source: str) -> Any:
    """Unpickle the bytes of a torch zip checkpoint as inert data (see the module docstring).

    Args:
        data: the whole file.
        source: how to name the file in errors (a path, credentials already removed).
    Returns:
        The pickled root object, with tensors (CPU, the file's dtypes) and ``PickledObject`` records in place of
        every non-whitelisted object.
    Raises:
        UnsafeCheckpointError: not a torch zip archive (the legacy non-zip format is not read), big-endian data,
            a malformed or truncated pickle, or a whitelisted name used with arguments it does not accept. Nothing
            named by the file has run when this is raised.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UnsafeCheckpointError(
            f"{source}: not a torch zip checkpoint (saved before PyTorch 1.6 or not a checkpoint at all)"
        ) from None
    with archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise UnsafeCheckpointError(f"{source}: expected one '<archive>/data.pkl' record, found {len(pkl)}")
        prefix = pkl[0][: -len("data.pkl")]
        try:
            order = archive.read(prefix + "byteorder").decode().strip()
        except KeyError:
            order = "little"
        if order != "little":
            raise UnsafeCheckpointError(f"{source}: byte order {order!r} is not supported (little-endian only)")
        unpickler = _SafeUnpickler(archive.read(pkl[0]), archive, prefix, source)
        try:
            return unpickler.load()
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(f"{source}: {e}") from None
        except RecursionError:
            raise UnsafeCheckpointError(f"{source}: pickle nests too deeply") from None
        except (
            pickle.UnpicklingError,
            EOFError,
            TypeError,
            ValueError,
            AttributeError,
            IndexError,
            KeyError,
            RuntimeError,
            zipfile.BadZipFile,
        ) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnsafeCheckpointError(f"{source}: malformed torch pickle ({type(e).__name__}: {first})") from None


def load_torch_pickle(path: str) -> tuple[Any, str]:
    """Read a local or fsspec checkpoint file with ``read_torch_pickle``.

    Returns:
        ``(root_object, sha256_hex_of_the_file)``.
    Raises:
        UnsafeCheckpointError: see ``read_torch_pickle``; also a missing or empty file.
    """
    from models.checkpoints import CheckpointError, _read_bytes, redact_uri

    source = redact_uri(path)
    try:
        data = _read_bytes(path)
    except CheckpointError as e:
        raise UnsafeCheckpointError(str(e)) from None
    if not data:
        raise UnsafeCheckpointError(f"{source}: file is empty")
    return read_torch_pickle(data, source=source), hashlib.sha256(data).hexdigest()


def iter_pickled_objects(obj: Any) -> Iterator[PickledObject]:
    """Every ``PickledObject`` reachable from ``obj`` (through containers, args and states), each once."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        x = stack.pop()
        if id(x) in seen or isinstance(x, (str, bytes, int, float, bool, torch.Tensor)) or x is None:
            continue
        seen.add(id(x))
        if isinstance(x, PickledObject):
            yield x
            stack.extend((x.args, x.kwargs, x.state, x.list_items, x.dict_items))
        elif isinstance(x, Mapping):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)
