"""Which versions of which models serve, and how that changes while the server runs.

The manager applies a list of :class:`~deploykit.server.model_config.ModelConfig` to the
:class:`~deploykit.server.core.InferenceService`'s version table (its
:class:`~deploykit.server.registry.VersionRegistry`), the way TF Serving's ``ServerCore`` does:

* **Version policy**: ``latest`` N (default 1), ``all`` or ``specific`` versions of each model's
  base path serve.
* **Rollover without failed requests**: a new version is loaded and warmed up off the event loop
  while the old one keeps serving; it goes live in one step (the table is only changed on the event
  loop, where requests are resolved); versions the policy no longer wants retire only once a wanted
  version is available, after their in-flight requests have finished. A version that fails to
  load is shown as END with its error in the model status and leaves the old one serving (it is
  retried when its files change).
* **Labels** point at available versions (``--allow_version_labels_for_unavailable_models``
  relaxes that, as in TF Serving).
* :meth:`ModelManager.poll` re-reads the base paths (``--file_system_poll_wait_seconds``);
  :meth:`ModelManager.apply` replaces the whole model set (config-file polling and
  ``ModelService/HandleReloadConfigRequest``): models missing from the new set are unloaded.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deploykit.errors import FailedPrecondition
from deploykit.repository import version_dirs
from deploykit.server import metrics
from deploykit.server.core import InferenceService
from deploykit.server.model_config import ModelConfig
from deploykit.server.version_loader import LoadedVersion, directory_fingerprint, load_version

log = logging.getLogger(__name__)

#: How long a retiring version waits for its in-flight requests before it is closed anyway.
RETIRE_TIMEOUT_S = 60.0


class ModelManager:
    """Keeps ``service.registry`` (versions and labels) in line with a model config."""

    def __init__(
        self,
        service: InferenceService,
        runtime_options: dict | None = None,
        *,
        warmup_requests: int = 3,
        allow_labels_for_unavailable: bool = False,
    ) -> None:
        self.service = service
        self.runtime_options = runtime_options or {}
        self.warmup_requests = warmup_requests
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.models: dict[str, ModelConfig] = {}
        # One loader thread: framework loaders are not all thread-safe (torch.export.load is not),
        # and loads must not take inference threads away from the versions that serve meanwhile.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploykit-load")
        self._lock = asyncio.Lock()  # one reconciliation at a time (poll and reload may overlap)
        #: (model, version) -> files of a version that failed to load; it is retried when they change
        #: (a version copied in place is seen half-written by a poll: it must not stay failed).
        self._failed: dict[tuple[str, int], tuple] = {}
        #: model -> what is wrong with its base path ("" when fine), to log each change once.
        self._base_path_problems: dict[str, str] = {}
        self._empty: set[str] = set()  # models whose empty base path was reported

    async def apply(self, models: list[ModelConfig]) -> None:
        """Serve exactly ``models`` (TF Serving's ReloadConfig); returns once the change is done.

        Raises :class:`FailedPrecondition` when a label points at a version that is not available
        (the model set is applied; the labels of that model are left as they were).
        """
        async with self._lock:
            self.models = {m.name: m for m in models}
            registry = self.service.registry
            for name in [n for n in registry.model_names() if n not in self.models]:
                log.info("model %s is no longer configured: unloading it", name)
                for loaded in registry.versions(name).values():
                    await self._retire(loaded)
                registry.remove_model(name)
            await self._reconcile()

    async def poll(self) -> None:
        """Look for new or removed versions under every base path and act on them."""
        async with self._lock:
            await self._reconcile()

    def close(self) -> None:
        # Not waiting: a load still running finishes in its thread and is dropped with the process.
        self._loader.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------ internals

    async def _reconcile(self) -> None:
        """For each model: load the wanted versions, move its labels, then retire the others (in
        this order, so a label never points at a retiring version while its successor serves)."""
        errors = []
        for model in self.models.values():
            try:
                on_disk = version_dirs(model.base_path)
                problem = "" if model.base_path.is_dir() else f"base path {model.base_path} does not exist (deleted?)"
            except OSError as exc:  # unreadable (permissions, a stale mount): said once, not every poll
                on_disk, problem = {}, f"base path {model.base_path} cannot be read ({exc.strerror or exc})"
            self._report_base_path(model, problem)
            if problem:  # nothing to compare against: the loaded versions keep serving
                continue
            try:
                await self._load_wanted(model, on_disk)
            except Exception:  # one model's file system trouble must not stop the others
                log.exception("model %s: looking for versions under %s failed", model.name, model.base_path)
                continue
            try:
                self._assign_labels(model)
            except FailedPrecondition as exc:
                errors.append(str(exc))
            await self._retire_unwanted(model, on_disk)
        if errors:
            raise FailedPrecondition("; ".join(errors))

    def _report_base_path(self, model: ModelConfig, problem: str) -> None:
        """Log a base path's trouble once per change of state, and show it in the status of the
        versions that keep serving (TF Serving keeps them too, but logs an error every poll)."""
        registry = self.service.registry
        registry.add_model(model.name)
        for loaded in registry.versions(model.name).values():
            loaded.notice = f"{problem}; this version keeps serving from memory" if problem else ""
        if self._base_path_problems.get(model.name, "") == problem:
            return
        self._base_path_problems[model.name] = problem
        serving = sorted(v.version for v in registry.versions(model.name).values() if v.available)
        if problem:
            kept = f"versions {serving} keep serving from memory" if serving else "no version serves"
            log.error("model %s: %s; %s until it is back", model.name, problem, kept)
        else:
            log.info("model %s: base path %s is readable again", model.name, model.base_path)

    async def _load_wanted(self, model: ModelConfig, on_disk: dict[int, Path]) -> None:
        wanted = model.policy.select(on_disk)
        registry = self.service.registry
        versions = registry.versions(model.name)
        if on_disk or versions:
            self._empty.discard(model.name)
        elif model.name not in self._empty:  # once, not every poll
            self._empty.add(model.name)
            log.warning("model %s: no versions found under base path %s", model.name, model.base_path)
        # Forget failures whose directories are gone, so a re-pushed version is loaded again.
        for number in [n for n, v in versions.items() if v.error and n not in on_disk]:
            registry.forget(model.name, number)
            self._failed.pop((model.name, number), None)
        for number in sorted(wanted, reverse=True):  # newest first: it is the one latest-policy requests get
            current = registry.get(model.name, number)
            if current is not None and current.available:
                continue
            fingerprint = directory_fingerprint(on_disk[number])
            if current is not None and current.error and self._failed.get((model.name, number)) == fingerprint:
                continue  # failed, and its files have not changed since: not retried
            loaded = await self._load(model.name, number, on_disk[number])
            if loaded.error:
                self._failed[(model.name, number)] = fingerprint
            else:
                self._failed.pop((model.name, number), None)

    async def _retire_unwanted(self, model: ModelConfig, on_disk: dict[int, Path]) -> None:
        wanted = model.policy.select(on_disk)
        versions = self.service.registry.versions(model.name)
        if any(versions[n].available for n in wanted if n in versions):  # never leave a model with nothing
            for loaded in [v for n, v in versions.items() if n not in wanted and v.available]:
                await self._retire(loaded)

    async def _load(self, name: str, number: int, path: Path) -> LoadedVersion:
        # Visible in GetModelStatus as LOADING, never resolved.
        self.service.registry.put(LoadedVersion(name, number, path, state="LOADING"))
        metrics.set_model_state(name, number, "LOADING")
        log.info("model %s: loading version %d from %s", name, number, path)
        loaded = await asyncio.get_running_loop().run_in_executor(
            self._loader, load_version, name, number, path, self.runtime_options, self.warmup_requests
        )
        self.service.registry.put(loaded)  # the switch: from here on requests for this model can get it
        metrics.set_model_state(name, number, loaded.state, loaded.load_seconds)
        return loaded

    async def _retire(self, loaded: LoadedVersion) -> None:
        if loaded.runtime is None:
            return
        loaded.state = "UNLOADING"  # resolve() stops handing it out; requests already running finish
        metrics.set_model_state(loaded.name, loaded.version, "UNLOADING")
        if not await self.service.release_version(loaded, RETIRE_TIMEOUT_S):
            log.warning(
                "%s version %d: requests still running after %g s; closing it anyway",
                loaded.name,
                loaded.version,
                RETIRE_TIMEOUT_S,
            )
        runtime, loaded.runtime = loaded.runtime, None
        await asyncio.get_running_loop().run_in_executor(self._loader, runtime.close)
        loaded.state = "END"
        metrics.set_model_state(loaded.name, loaded.version, "END")
        log.info("model %s: version %d unloaded", loaded.name, loaded.version)

    def _assign_labels(self, model: ModelConfig) -> None:
        """Point ``model``'s labels at their versions, all or none.

        As TF Serving: a label must point at an available version; with
        ``--allow_version_labels_for_unavailable_models`` a *new* label may point at any version, but
        moving an existing label still needs an available target.
        """
        versions = self.service.registry.versions(model.name)
        current = self.service.registry.labels(model.name)
        for label, number in model.labels.items():
            loaded = versions.get(number)
            if loaded is not None and loaded.available:
                continue
            if self.allow_labels_for_unavailable and current.get(label, number) == number:
                continue
            raise FailedPrecondition(
                f"Request to assign label to version {number} of model {model.name}, which is not currently "
                "available for inference"
            )
        self.service.registry.set_labels(model.name, model.labels)
