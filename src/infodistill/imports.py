"""``import_object``: the object a ``"package.module:attr"`` or ``"path/to/file.py:attr"`` string
names, for every factory a config or a flag can name (a model, a data set).

Naming a factory runs that code, as importing it would: a config that names one is a program, to
be trusted like one. Every error is a ``ValueError`` of one line that names the problem and the
fix. Standard library only: the data and the model layers both use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["first_line", "import_object"]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def import_object(spec: str, what: str = "factory"):
    """The object ``spec`` names: ``"package.module:attr"`` or ``"path/to/file.py:attr"``
    (``attr`` may be dotted, e.g. ``"module:Class.create"``)."""
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ValueError(
            f"{what} must look like 'package.module:function' or 'path/to/file.py:function', got {spec!r}"
        )
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError(
            f"{what} {spec!r} must name a module and a function, as 'package.module:function' "
            "or 'path/to/file.py:function'"
        )
    if where.endswith(".py"):
        module = _import_file(Path(where), what, spec)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
                raise ValueError(
                    f"{what} {spec!r}: no module named {exc.name!r}; install it, put its directory on "
                    "PYTHONPATH, or name a file as 'path/to/file.py:function'"
                ) from None
            raise ValueError(f"{what} {spec!r}: importing {where} failed ({first_line(exc)})") from None
        except Exception as exc:
            raise ValueError(f"{what} {spec!r}: importing {where} failed ({first_line(exc)})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            shown = ", ".join(public[:8]) + (" ..." if len(public) > 8 else "")
            raise ValueError(
                f"{what} {spec!r}: {where} has no attribute {attr!r}; it defines {shown or 'no callables'}"
            )
        obj = getattr(obj, part)
    return obj


def _import_file(path: Path, what: str, spec: str):
    if not path.is_file():
        raise ValueError(
            f"{what} {spec!r}: no file {path} (relative paths start from the current directory "
            f"{Path.cwd()}); give the file's path"
        )
    path = path.resolve()
    # One module per file, so two configs naming the same file share its classes.
    name = "infodistill_user_" + "_".join(p for p in path.with_suffix("").parts if p not in ("/", "\\"))
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"{what} {spec!r}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ValueError(f"{what} {spec!r}: importing {path} failed ({first_line(exc)})") from None
    return module
