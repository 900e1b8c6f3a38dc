"""PromQL query templates, rendered in jinja2's immutable sandbox.

Query overrides come from the manifest, and a manifest that passes `validate` must
not run code: the sandbox refuses attribute tricks such as
`{{ cycler.__init__.__globals__.os }}`, and a template sees only the variables given
to it (`track`, `window`, `q`), with undefined names an error rather than "".
"""

from __future__ import annotations

from functools import lru_cache

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# PromQL, not HTML: nothing to escape; the sandbox is what keeps a template harmless.
_ENVIRONMENT = ImmutableSandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined)
# No globals either (jinja2's range, dict, cycler, namespace, ...): a query needs none,
# and `{{ namespace }}` must be the Kubernetes variable or an error, never jinja2's class.
_ENVIRONMENT.globals.clear()


@lru_cache(maxsize=64)
def _compiled(text: str) -> jinja2.Template:
    return _ENVIRONMENT.from_string(text)


def render_query(text: str, **variables: object) -> str:
    """The query `text` with `variables` filled in; ValueError on any template error."""
    try:
        return _compiled(text).render(**variables)
    except jinja2.TemplateError as exc:
        raise ValueError(f"template error: {exc.message or type(exc).__name__}") from None
