"""The pipeline's configuration: a YAML file validated by pydantic (a default ships beside this
module). A wrong key or value is a :class:`UsageError` (exit 2) naming the field and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from deploykit.errors import UsageError

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
#: The wire protocols a deploy path can be measured over: TF Serving's gRPC and REST APIs, and the
#: Open Inference Protocol (KServe v2) over gRPC and REST.
Protocol = Literal["grpc", "rest", "v2-grpc", "v2-rest"]
#: The default: both TF Serving APIs and v2 over gRPC (v2 REST on request: it adds a path per artifact).
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "rest", "v2-grpc")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """One model: trained (or initialised, ``epochs: 0``) in each framework, exported to each format."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
    architecture: str = "mlp"
    data: str = "digits"
    frameworks: list[Literal["torch", "tf"]] = Field(default=["torch", "tf"], min_length=1)
    formats: Literal["all"] | list[str] = "all"
    epochs: int = Field(default=30, ge=0)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    seed: int = 0

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        from deploykit.zoo.spec import ARCHITECTURES

        if value not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {value!r}; allowed: {', '.join(sorted(ARCHITECTURES))}")
        return value

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: Any) -> Any:
        from deploykit.export.convert import FORMATS

        known = sorted({f for fs in FORMATS.values() for f in fs})
        if isinstance(value, list):
            unknown = [f for f in value if f not in known]
            if unknown or not value:
                raise ValueError(f"unknown format(s) {unknown}; allowed: 'all' or a list of {', '.join(known)}")
        return value

    def formats_for(self, framework: str) -> tuple[str, ...]:
        from deploykit.export.convert import FORMATS, OPT_IN_FORMATS

        own = FORMATS[framework]
        if self.formats == "all":  # as `deploykit export`: aoti (a long compile) only when listed
            return tuple(f for f in own if f not in OPT_IN_FORMATS)
        return tuple(f for f in own if f in self.formats)


class ServingConfig(_Strict):
    protocols: list[Protocol] = Field(default=list(PROTOCOLS), min_length=1)
    tfserving: Literal["auto", "compatible"] = "auto"
    triton: Literal["auto", "compatible", "off"] = "auto"
    ready_timeout_s: float = Field(default=180.0, gt=0)


class LoadConfig(_Strict):
    batch_size: int = Field(default=1, ge=1)
    under_load_concurrency: int = Field(default=8, ge=2)
    duration_s: float = Field(default=2.0, gt=0)
    warmup_s: float = Field(default=0.5, ge=0)
    window_s: float = Field(default=0.5, gt=0)
    rounds: int = Field(default=2, ge=1)
    processes: int = Field(default=1, ge=1)


class PipelineConfig(_Strict):
    """The whole pipeline; see ``default.yaml`` for every key with its meaning."""

    reports_dir: Path = Path("reports")
    work_dir: Path = Path("runs/pipeline")
    run_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    models: list[ModelConfig] = Field(min_length=1)
    serving: ServingConfig = ServingConfig()
    load: LoadConfig = LoadConfig()

    @field_validator("models")
    @classmethod
    def _unique_names(cls, value: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in value]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        return value


def _allowed_keys(model: type[BaseModel], loc: tuple) -> str:
    """The keys allowed where an unknown key was found (``loc`` ends with the unknown key)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), model)
    return ", ".join(model.model_fields)


def _describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key; allowed here: {_allowed_keys(PipelineConfig, loc)}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where or '(top level)'}: {message} (got {error.get('input')!r})"


def parse(data: Any, origin: str) -> PipelineConfig:
    """Validate parsed YAML; every problem is named in one :class:`UsageError`."""
    if not isinstance(data, dict):
        raise UsageError(f"{origin}: expected a mapping of pipeline settings, got {type(data).__name__}")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise UsageError(f"{origin}: {problems}") from None


def load(path: Path | None = None) -> PipelineConfig:
    """Read ``path`` (default: the configuration that ships with deploykit)."""
    import yaml

    path = Path(path) if path else DEFAULT_CONFIG
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read pipeline config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse(data, str(path))
