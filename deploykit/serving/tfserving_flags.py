"""TF Serving's command line beyond :class:`~deploykit.serving.options.ServeOptions`: the syntax of
``--grpc_channel_arguments``, and TF Serving flags that ``serve`` accepts under another name
(:data:`RENAMED`) or drops with a note (:data:`IGNORED`). A flag that should take effect becomes a
field of the options model instead (see "Adding a flag" there)."""

from __future__ import annotations

from deploykit.errors import UsageError


def parse_grpc_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """TF Serving's ``--grpc_channel_arguments``: ``key=value`` pairs separated by commas; integer
    values are passed as integers. Unknown keys are gRPC's to ignore, as in TF Serving."""
    arguments: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(
                f"--grpc_channel_arguments: {item!r} is not key=value (e.g. grpc.max_connection_age_ms=2000)"
            )
        value = value.strip()
        arguments.append((key.strip(), int(value) if value.lstrip("-").isdecimal() else value))
    return arguments


# ------------------------------------------------------------------------------ TF Serving's other flags

#: TF Serving flag -> the ``serve`` option with the same meaning under another name.
RENAMED = {
    "--tensorflow_intra_op_parallelism": "--intra_op_threads",
    "--tensorflow_inter_op_parallelism": "--inter_op_threads",
}

#: TF Serving flags ``serve`` accepts and drops (with a note) -> (boolean flag without a value, why).
#: Dropped before parsing, so they do not reach a launched TF Serving either; a flag that should
#: becomes a field (see "Adding a flag").
IGNORED: dict[str, tuple[bool, str]] = {
    "--enable_grpc_healthcheck_service": (True, "the gRPC health service is always on"),
    "--enable_signature_method_name_check": (True, "method names are not checked (TF Serving's default)"),
    "--enable_per_model_batching_parameters": (True, "per-model batching files are not read"),
    "--flush_filesystem_caches": (True, "no TensorFlow file-system caches to flush"),
    "--remove_unused_fields_from_bundle_metagraph": (True, "TensorFlow bundle option"),
    "--enable_profiler": (True, "TensorFlow profiler"),
    "--prefer_tflite_model": (True, "TFLite models are not served"),
    "--mixed_precision": (False, "TensorFlow session option"),
    "--xla_cpu_compilation_enabled": (True, "TensorFlow session option"),
    "--xla_gpu_compilation_enabled": (True, "TensorFlow session option"),
    "--skip_initialize_tpu": (True, "no TPU support"),
    "--use_alts_credentials": (True, "ALTS is Google-internal"),
    "--grpc_max_threads": (False, "the gRPC front end is asynchronous"),
    "--num_load_threads": (False, "versions load one at a time (not all loaders are thread-safe)"),
    "--num_unload_threads": (False, "versions unload one at a time"),
    "--max_num_load_retries": (False, "a failed version is not retried until its directory changes"),
    "--load_retry_interval_micros": (False, "a failed version is not retried until its directory changes"),
    "--num_request_iterations_for_warmup": (False, "warm-up runs 3 requests (--enable_model_warmup)"),
    "--saved_model_tags": (False, "SavedModels are loaded with the 'serve' tag"),
    "--tensorflow_session_parallelism": (False, "TensorFlow session option"),
    "--tensorflow_session_config_file": (False, "TensorFlow session option"),
    "--platform_config_file": (False, "platforms are detected from the files"),
    "--thread_pool_factory_config_file": (False, "TensorFlow thread pools"),
    "--per_process_gpu_memory_fraction": (False, "TensorFlow GPU option"),
    "--num_tflite_pools": (False, "TFLite models are not served"),
    "--num_tflite_interpreters_per_pool": (False, "TFLite models are not served"),
}
