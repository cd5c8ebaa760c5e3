"""The version table: which versions of which models the server knows, and their labels.

:class:`VersionRegistry` answers the questions requests ask (which version serves ``Latest(name)``,
``Specific(name, 3)`` or label ``stable``; the status of every version) and is changed only through
its methods, by :class:`deploykit.server.manager.ModelManager`. Every read and write happens on the
server's event loop, where requests are resolved, so a request never sees a half-applied change and
no lock is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from deploykit.errors import InvalidInput, ModelNotFound
from deploykit.model_ref import ModelRef
from deploykit.server.version_loader import LoadedVersion


def _not_found(ref: ModelRef, candidates: list[LoadedVersion]) -> ModelNotFound:
    """TF Serving's NOT_FOUND; when a version failed because its framework is not installed, the
    message also says which extra to install (the client could not otherwise tell why)."""
    message = f"Servable not found for request: {ref.describe()}"
    missing = [v for v in candidates if v.framework_missing]
    if missing:
        newest = max(missing, key=lambda v: v.version)
        message += f"; version {newest.version} could not be loaded: {newest.error}"
    return ModelNotFound(message)


class VersionRegistry:
    """Model name -> version number -> :class:`LoadedVersion` (loaded, loading or failed), and
    model name -> label -> version number."""

    def __init__(self, versions: Iterable[LoadedVersion] = ()) -> None:
        self._versions: dict[str, dict[int, LoadedVersion]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        for loaded in versions:
            self.put(loaded)

    # ----------------------------------------------------------------------------- reads

    def model_names(self) -> list[str]:
        """Every model the server knows, in the order they were added."""
        return list(self._versions)

    def versions(self, name: str) -> dict[int, LoadedVersion]:
        """A snapshot of model ``name``'s versions by number ({} for an unknown model)."""
        return dict(self._versions.get(name, {}))

    def get(self, name: str, version: int) -> LoadedVersion | None:
        """One version, or None."""
        return self._versions.get(name, {}).get(version)

    def __iter__(self) -> Iterator[LoadedVersion]:
        """Every version of every model."""
        return iter([loaded for versions in self._versions.values() for loaded in versions.values()])

    def labels(self, name: str) -> dict[str, int]:
        """A snapshot of model ``name``'s labels ({} when it has none)."""
        return dict(self._labels.get(name, {}))

    def resolve(self, ref: ModelRef) -> LoadedVersion:
        """The available version a request addresses (latest when none is named); TF Serving's errors."""
        if not ref.name:  # TF Serving's ServerCore::ServableRequestFromModelSpec
            raise InvalidInput("ModelSpec has no name specified.")
        versions = self._versions.get(ref.name, {})
        if ref.label is not None:
            version = self._labels.get(ref.name, {}).get(ref.label)
            if version is None:
                raise InvalidInput(f"Unrecognized servable version label: {ref.label}")
            ref = dataclasses.replace(ref, version=version, label=None)
        if ref.version is not None:
            loaded = versions.get(ref.version)
            if loaded is None or not loaded.available:
                raise _not_found(ref, [loaded] if loaded is not None else [])
            return loaded
        available = [v for v in versions.values() if v.available]
        if not available:
            raise _not_found(ref, list(versions.values()))
        return max(available, key=lambda v: v.version)

    def status(self, name: str, version: int | None) -> list[LoadedVersion]:
        """Every known version of ``name`` (or one), loaded or failed, in version order (GetModelStatus)."""
        versions = self._versions.get(name, {})
        if not versions:
            raise ModelNotFound(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in versions:
                raise ModelNotFound(f"Could not find version {version} of model {name}")
            return [versions[version]]
        return [versions[v] for v in sorted(versions)]

    @property
    def ready(self) -> bool:
        """True when at least one version of every known model is available."""
        return all(any(v.available for v in vs.values()) for vs in self._versions.values())

    # ----------------------------------------------------------------------------- changes (the manager's)

    def add_model(self, name: str) -> None:
        """Know model ``name`` even before it has a version (it is then not ready, and its status
        says it has no versions rather than that it does not exist)."""
        self._versions.setdefault(name, {})

    def put(self, loaded: LoadedVersion) -> None:
        """Add or replace one version: from here on requests can be resolved to it (if available)."""
        self._versions.setdefault(loaded.name, {})[loaded.version] = loaded

    def forget(self, name: str, version: int) -> None:
        """Drop one version from the table (a failed version whose directory is gone)."""
        self._versions.get(name, {}).pop(version, None)

    def remove_model(self, name: str) -> None:
        """Drop a model, its versions and its labels (it is no longer configured)."""
        self._versions.pop(name, None)
        self._labels.pop(name, None)

    def set_labels(self, name: str, labels: dict[str, int]) -> None:
        """Replace model ``name``'s labels (the manager checked their targets)."""
        self._labels[name] = dict(labels)
