"""Finding a job registry by its ``MODULE:OBJECT`` name (``ojs-actors worker``'s argument)."""

from __future__ import annotations

import importlib

from ._registry import JobRegistry


class RegistryNotFound(LookupError):
    """``MODULE:OBJECT`` names no module, no object, or an object that is no registry."""


class RegistryImportFailed(RuntimeError):
    """The registry's module raised while it was imported (its ``__cause__``)."""


def load_registry(target: str) -> JobRegistry:
    """The :class:`JobRegistry` that ``target`` names: ``package.module:object`` (``object``
    may be dotted, ``module:app.jobs``), or a zero-argument callable there returning one."""
    module_name, colon, path = target.partition(":")
    if not colon or not module_name or not path:
        raise RegistryNotFound(f"expected MODULE:OBJECT (e.g. myapp.tasks:jobs), not {target!r}")
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and _is_part_of(error.name, module_name):
            raise RegistryNotFound(
                f"no module named {error.name!r} (looked in the working directory and "
                "on PYTHONPATH)"
            ) from None
        raise RegistryImportFailed(f"importing {module_name!r} failed: {error}") from error
    except Exception as error:
        raise RegistryImportFailed(f"importing {module_name!r} failed: {error!r}") from error
    for attribute in path.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError:
            raise RegistryNotFound(f"{module_name!r} has no attribute {path!r}") from None
    if not isinstance(found, JobRegistry) and callable(found):
        try:
            found = found()
        except Exception as error:
            raise RegistryImportFailed(f"calling {target!r} failed: {error!r}") from error
    if not isinstance(found, JobRegistry):
        raise RegistryNotFound(
            f"{target!r} is no JobRegistry (nor a function returning one): it is of type "
            f"{type(found).__name__}"
        )
    return found


def _is_part_of(missing: str, module_name: str) -> bool:
    """``missing`` is ``module_name`` or one of its parent packages (not something the
    module itself imports)."""
    return module_name == missing or module_name.startswith(missing + ".")


__all__ = ["RegistryImportFailed", "RegistryNotFound", "load_registry"]
