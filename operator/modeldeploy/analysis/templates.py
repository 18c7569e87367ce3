"""User PromQL templates: jinja2 in a sandbox, undefined variables are errors (Flagger's missingkey=error).

A custom metric's ``query`` may use exactly these variables: namespace, name, modelName,
stableVersion, canaryVersion, interval, service. Anything else — an unknown variable, a filter
that does not exist, or an attribute-escape payload such as ``{{ ''.__class__.__mro__ }}`` — is
rejected when the spec is validated, long before a rollout depends on it.
"""

from __future__ import annotations

from collections.abc import Mapping

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

TEMPLATE_VARIABLES = (
    "namespace",
    "name",
    "modelName",
    "stableVersion",
    "canaryVersion",
    "interval",
    "service",
)

_SAMPLE_CONTEXT = {
    "namespace": "radiology",
    "name": "resnet50",
    "modelName": "resnet50_chest_xray",
    "stableVersion": "2",
    "canaryVersion": "3",
    "interval": "1m",
    "service": "resnet50.radiology.svc.cluster.local",
}


class TemplateProblem(ValueError):
    """A query template that cannot be rendered safely."""


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    # No access to anything global beyond the variables we pass.
    env.globals.clear()
    return env


_ENV = _environment()


def render_query(template: str, context: Mapping[str, object]) -> str:
    """The PromQL text of a custom metric; TemplateProblem on any undefined name or sandbox violation."""
    unknown = set(context) - set(TEMPLATE_VARIABLES)
    if unknown:
        raise TemplateProblem(f"unsupported template variables passed: {sorted(unknown)}")
    try:
        return _ENV.from_string(template).render(**context).strip()
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(
            f"template uses an undefined variable ({exc.message}); available: {', '.join(TEMPLATE_VARIABLES)}"
        ) from None
    except SecurityError as exc:
        raise TemplateProblem(f"template is not allowed by the sandbox: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateProblem(f"template error: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user template must never crash the operator
        raise TemplateProblem(f"template failed to render: {type(exc).__name__}: {exc}") from None


def check_query_template(template: str) -> str:
    """Render with sample values; raises TemplateProblem when the template is unusable."""
    rendered = render_query(template, _SAMPLE_CONTEXT)
    if not rendered:
        raise TemplateProblem("template renders to an empty query")
    return rendered
