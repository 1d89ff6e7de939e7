"""converters.py: each converter accepts exactly what the JSON schema it publishes allows.

The range expressions are checked against brute force and plain comparisons;
then, for every converter the route table uses, values generated *from its own
schemas* (hypothesis-jsonschema, as schemathesis does) must convert, and
arbitrary values must convert exactly when ``jsonschema`` says they are valid.
"""

import json
import re
from decimal import Decimal

import pytest

from wsgikernel import config
from wsgikernel.converters import (MAX_COUNT, Anything, Boolean, Choice, Count, Pattern,
                                   Seconds, Size, Strings, Text, decimal_range, integer_range)
from wsgikernel.params import ENV_ID_RULE, ENV_ID_RULE_TEXT

hypothesis = pytest.importorskip("hypothesis")  # in the test extra, with schemathesis
jsonschema = pytest.importorskip("jsonschema")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def matches(regex, text):
    return re.fullmatch(regex, text) is not None


# -- ranges as regular expressions ------------------------------------------------------

@pytest.mark.parametrize("lo, hi", [(0, 0), (0, 9), (0, 12), (1, 999), (5, 123456), (7, 7),
                                    (0, 10000), (99, 100), (100, 99), (10, 10 ** 5)])
def test_integer_range_matches_exactly_the_range(lo, hi):
    regex = integer_range(lo, hi)
    assert [n for n in range(200001) if matches(regex, str(n))] == \
        [n for n in range(200001) if lo <= n <= hi]


def test_integer_range_has_no_leading_zeros_signs_or_spaces():
    regex = integer_range(0, 1000)
    for text in ("00", "01", "+1", "-0", " 1", "1 ", "1.0", "1e2", "٣", ""):
        assert not matches(regex, text), text


@SETTINGS
@given(st.integers(0, 2 ** 64), st.integers(0, 2 ** 64), st.integers(0, 2 ** 65))
def test_integer_range_for_large_bounds(a, b, n):
    lo, hi = min(a, b), max(a, b)
    for value in (n, lo, hi, lo - 1, hi + 1):
        if value >= 0:
            assert matches(integer_range(lo, hi), str(value)) == (lo <= value <= hi)
    assert matches(integer_range(lo), str(n)) == (n >= lo)


@SETTINGS
@given(st.integers(0, 10 ** 6), st.decimals(0, 10 ** 7, places=4),
       st.decimals(0, 10 ** 7, places=6))
def test_decimal_range_against_decimal_comparison(lo, hi, value):
    hi = max(hi, lo)
    regex = decimal_range(lo, float(hi))
    exact = Decimal(float(hi))  # the bound as the float the config holds
    for number in (value, Decimal(lo), exact, exact + Decimal("0.001")):
        text = format(number, "f")
        assert matches(regex, text) == (lo <= number <= exact), (lo, hi, text)


def test_decimal_range_with_a_fractional_maximum():
    regex = decimal_range(0, 7.5)
    for text, inside in (("7.5", True), ("7.50", True), ("7.49999", True), ("7.500001", False),
                         ("7.6", False), ("0", True), ("6.99", True), ("8", False),
                         (".5", False), ("5.", False), ("1e0", False)):
        assert matches(regex, text) == inside, text


# -- the converters the route table uses -----------------------------------------------

CONVERTERS = {
    "text": Text(), "code": Text(max_length=50), "env id": Pattern(ENV_ID_RULE, ENV_ID_RULE_TEXT),
    "boolean": Boolean(), "count": Count(), "page": Count(0, 10000), "n": Count(1),
    "wait": Seconds(3600), "timeout": Seconds(7.5), "cpu": Seconds(2 ** 63 - 1, lo=1),
    "detail": Choice(0, 1), "memory": Size(256 << 20, 2 ** 63 - 1, config.size),
    "file size": Size(1, 1 << 30, config.size), "strings": Strings(),
}


def converts(converter, value):
    try:
        converter(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_what_the_schemas_allow_is_accepted(name):
    from hypothesis_jsonschema import from_schema
    converter = CONVERTERS[name]

    @SETTINGS
    @given(st.one_of(from_schema(converter.json), from_schema(converter.text)))
    def check(value):
        assert converts(converter, value), value
    check()


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False,
                                                                             allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["512MiB", "1k", "0", "3600.5", "yes", "٣", "00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                  max_size=3), max_leaves=5)


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_anything_else_is_refused(name):
    converter = CONVERTERS[name]
    validator = jsonschema.Draft202012Validator(converter.json)

    @SETTINGS
    @given(JSON_LIKE)
    def check(value):
        if value is None or (name == "boolean" and value in (0.0, 1.0) and type(value) is float):
            return  # null means "not given" (params.optional); 1.0: see the boolean test
        assert converts(converter, value) == validator.is_valid(value), value
    check()


def test_booleans_refuse_float_spellings_the_schema_cannot_tell_apart():
    """JSON Schema's number model makes 1.0 equal to 1; the service, as before, refuses it."""
    assert jsonschema.Draft202012Validator(Boolean().json).is_valid(1.0)
    assert not converts(Boolean(), 1.0) and not converts(Boolean(), 0.0)


@pytest.mark.parametrize("text, value", [("512MiB", 512 << 20), ("256M", 256 << 20),
                                         ("1g", 1 << 30), ("268435456", 268435456),
                                         ("268435456B", 268435456), ("2TiB", 2 << 40)])
def test_sizes_in_text(text, value):
    assert CONVERTERS["memory"](text) == value


@pytest.mark.parametrize("text", ["255MiB", "0", "268435455", "1.5G", "512 MiB", "512MiBs",
                                  "none", "", "-1G", "9223372036854775808"])
def test_sizes_out_of_range_or_spelled_otherwise_are_refused(text):
    assert not converts(CONVERTERS["memory"], text)


def test_strings_in_text_are_a_json_object_of_strings():
    strings = CONVERTERS["strings"]
    assert strings('{"a": "b", "c\\u00e9": "\\ud83d\\ude00"}') == {"a": "b", "cé": "😀"}
    for text in ('{"a": 1}', '{"a": "\\ud800"}', '["a"]', '{"a": {"b": "c"}}', "{a: 'b'}"):
        assert not converts(strings, text), text
    assert not matches(Strings.regex, '{"a": "\\ud800"}')


def test_anything_takes_anything():
    assert Anything()(5) == 5 and Anything()(".bad") == ".bad" and Anything().json == {}


@pytest.mark.parametrize("converter", [Count(), Seconds(), Boolean(), Strings()])
def test_null_and_absence_are_read_alike(converter):
    from wsgikernel.params import optional
    assert optional({"x": None}, "x", converter, "default") == "default"
    assert optional({}, "x", converter, "default") == "default"


def test_max_count_is_exact_in_every_json_client():
    assert float(MAX_COUNT) == MAX_COUNT and float(MAX_COUNT + 1) == MAX_COUNT + 1
    assert json.loads(json.dumps(Count().typed))["maximum"] == MAX_COUNT
