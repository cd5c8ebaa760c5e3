"""``tensorflow_model_server`` command lines, accepted by ``deploykit serve`` as they are.

TF Serving's flags that deploykit honours are ``serve`` options under the same names (declared in
:mod:`deploykit.serving.options`). This module handles the rest of a user's existing command line
before Typer parses it:

* booleans written ``--flag=true`` / ``--flag=false`` (absl's spelling) become ``--flag`` /
  ``--no-flag`` (click's);
* flags with a deploykit equivalent under another name are renamed (:data:`~deploykit.serving.tfserving_flags.RENAMED`);
* flags that have no meaning for deploykit (:data:`~deploykit.serving.tfserving_flags.IGNORED`: TensorFlow
  session tuning, TFLite, TPU, load retries...) are dropped with one note each, so the command still
  runs and says what it ignored.
"""

from __future__ import annotations

from deploykit.serving.tfserving_flags import IGNORED, RENAMED

_TRUE, _FALSE = ("true", "1"), ("false", "0")


def translate(argv: list[str], command) -> tuple[list[str], list[str]]:
    """Rewrite ``argv`` (the arguments after ``serve``) for ``command``; returns (argv, notes).

    ``command`` is the click command of ``deploykit serve`` (its boolean flags are read from it).
    """
    flags = {
        name: (param.opts[0], param.secondary_opts[0] if param.secondary_opts else None)
        for param in command.params
        if getattr(param, "is_flag", False)  # typer ships its own copy of click: no isinstance
        for name in param.opts
    }
    rewritten: list[str] = []
    notes: list[str] = []
    args = iter(argv)
    for arg in args:
        name, has_value, value = arg.partition("=")
        if name in IGNORED:
            is_bool, reason = IGNORED[name]
            if not has_value and not is_bool:
                next(args, None)  # "--flag value": the value goes too
            notes.append(f"ignoring TF Serving flag {name} ({reason})")
            continue
        if name in RENAMED:
            arg = RENAMED[name] + arg[len(name) :]
        elif name in flags and value.lower() in _TRUE + _FALSE:
            on, off = flags[name]
            if value.lower() in _FALSE:
                if off is None:
                    continue  # a flag without a negative form: false is its default
                arg = off
            else:
                arg = on
        rewritten.append(arg)
    return rewritten, notes
