"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

One rule: fuzz only with requests that say what the generator meant, judged by
the published document itself.  schemathesis 3.39 breaks it three ways, and
the hook drops the cases that result (the service is never consulted):

* Generated bodies are labelled positive or negative, but hypothesis-jsonschema
  ignores some JSON Schema 2020-12 keywords (``dependentSchemas``, which the
  document uses for "silent is not combined with wait or stream") and
  negation is approximate: a body is kept only if validating it against its
  operation's schema in the document gives its label (valid iff positive).
* An optional request body that was left out is labelled negative (its
  negative strategy is ``negated schema | nothing``), yet leaving out an
  optional body is valid: ``POST /envs`` with no body creates an env.
* Form bodies go through ``requests``, which drops fields whose value is None
  (an all-None form goes out as an empty *chunked* body: a 411 here), spreads
  lists into repeated fields and writes other values with ``str()``: a
  negative ``{"silent": None}`` reaches the service as no ``silent`` at all,
  ``{"id": 5}`` as the valid text ``5``.  A form field is text, so a form body
  is kept only when it is an object of strings.

Query strings and paths are not touched.
"""

import jsonschema
import schemathesis
from schemathesis.types import NotSet

FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


_VALIDATORS = {}  # (operation, media type) -> the body's validator


def body_validator(case):
    key = (case.operation.verbose_name, case.media_type)
    if key not in _VALIDATORS:
        content = case.operation.definition.resolved["requestBody"]["content"]
        _VALIDATORS[key] = jsonschema.Draft202012Validator(content[case.media_type]["schema"])
    return _VALIDATORS[key]


def faithful(case):
    """False for a case whose request would not say what was generated."""
    generator = case.meta.body if case.meta is not None else None
    if isinstance(case.body, NotSet):
        return generator is None or not generator.is_negative
    media = (case.media_type or "").split(";")[0].strip().lower()
    if media in FORMS and not (isinstance(case.body, dict)
                               and all(isinstance(v, str) for v in case.body.values())):
        return False
    if generator is None:  # an explicit example: sent as written
        return True
    return body_validator(case).is_valid(case.body) != generator.is_negative


@schemathesis.hook
def before_generate_case(context, strategy):
    return strategy.filter(faithful)
