"""The one HTML page every HTML report uses: Markdown body, embedded PNG figures, JSON appendices.
Self-contained (no script, no external resource), so it opens from a CI artifact or an e-mail."""

from __future__ import annotations

import html
import json

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "figure{display:inline-block;margin:1em}figure img{max-width:100%}"
    "pre{background:#f6f6f6;padding:1em;font-size:12px;overflow-x:auto}"
)


def page(title: str, markdown_text: str, figures: dict[str, str | None], appendices: dict[str, object]) -> str:
    """``figures`` are ``{caption: base64 PNG}`` (None entries are skipped); ``appendices`` are
    ``{heading: JSON-able}`` shown as preformatted JSON."""
    import markdown_it  # rich depends on markdown-it-py: Markdown -> HTML without another dependency

    body = markdown_it.MarkdownIt().enable("table").render(markdown_text)
    shown = "".join(
        f'<figure class="plot"><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, data in figures.items()
        if data
    )
    extra = "".join(
        f"<h3>{html.escape(heading)}</h3><pre>{html.escape(json.dumps(value, indent=1, default=str))}</pre>"
        for heading, value in appendices.items()
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        # an inline favicon: otherwise the browser asks for /favicon.ico and logs a console error
        "<link rel='icon' href='data:,'>"
        f"<style>{STYLE}</style></head><body>{body}{shown}{extra}</body></html>"
    )
