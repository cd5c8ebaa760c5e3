"""The behaviour of :class:`~deploykit.serving.options.ServeOptions` beside its field declarations:
checks across fields, per-flag syntax checks, the views the server and launchers read (the served
path, the version policy, the labels) and :meth:`ServeRules.parse`, which turns pydantic's errors
into one :class:`UsageError` line naming the flag. The fields these validators name are declared in
``ServeOptions`` (hence ``check_fields=False``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ValidationError, field_validator, model_validator

from deploykit.errors import UsageError
from deploykit.serving.flag import changed, explain
from deploykit.serving.tfserving_flags import parse_grpc_channel_arguments


class ServeRules(BaseModel):
    """Validators and derived views shared by the serve options (no fields of its own)."""

    if TYPE_CHECKING:  # declared as fields on ServeOptions; named here for the type checker only
        path: Path | None
        model_base_path: Path | None
        model_name: str | None
        version_policy: str
        label: list[str] | None

    @model_validator(mode="before")
    @classmethod
    def _default_model_name(cls, values: Any) -> Any:
        """--model_base_path without --model_name serves "default", TF Serving's default name."""
        if isinstance(values, dict) and values.get("model_base_path") is not None and values.get("model_name") is None:
            values = {**values, "model_name": "default"}
        return values

    @model_validator(mode="after")
    def _one_model_path(self) -> Self:
        if self.path is not None and self.model_base_path is not None:
            raise ValueError("give either PATH or --model_base_path, not both")
        return self

    @field_validator("version_policy", check_fields=False)
    @classmethod
    def _version_policy(cls, text: str) -> str:
        from deploykit.server.model_config import VersionPolicy  # here: keeps `deploykit --help` light

        policy = VersionPolicy.parse(text)
        return "latest" if policy == VersionPolicy() else policy.describe()

    @field_validator("label", check_fields=False)
    @classmethod
    def _labels(cls, texts: list[str] | None) -> list[str] | None:
        from deploykit.server.model_config import parse_label

        for text in texts or []:
            parse_label(text)
        return texts

    @property
    def served_path(self) -> Path | None:
        """The repository or model directory to serve: ``--model_base_path`` or PATH."""
        return self.model_base_path or self.path

    @property
    def policy(self):
        """``--version-policy`` as a :class:`~deploykit.server.model_config.VersionPolicy`."""
        from deploykit.server.model_config import VersionPolicy

        return VersionPolicy.parse(self.version_policy)

    @property
    def labels(self) -> tuple[tuple[str | None, str, int], ...]:
        """``--label`` values as ``(model or None, label, version)``."""
        from deploykit.server.model_config import parse_label

        return tuple(parse_label(text) for text in self.label or [])

    @field_validator("grpc_channel_arguments", check_fields=False)
    @classmethod
    def _channel_arguments(cls, value: str) -> str:
        parse_grpc_channel_arguments(value)  # refused at parse time, not when the server starts
        return value

    @field_validator("log_level", check_fields=False)
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"expected debug, info, warning or error, got {value!r}")
        return value

    @classmethod
    def parse(cls, **values: Any) -> Self:
        """The options from ``values``; a value pydantic refuses is one :class:`UsageError` naming the flag."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise UsageError("; ".join(explain(cls, error) for error in exc.errors())) from None

    def changed(self, name: str) -> bool:
        """Whether field ``name`` was given a value other than its default."""
        return changed(self, name)
