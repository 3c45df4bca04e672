"""The synthetic set's cache key: changing any generator field makes a new set, and nothing else does."""
from __future__ import annotations

import dataclasses

import pytest

from Config import Config
from Datasets.synthetic import SyntheticSpec, synthetic_spec

# every Config field the generator reads; discovered, so a new synthetic_* setting is covered without editing this
GENERATOR_KEYS = [f for f in Config.field_names() if f.startswith("synthetic_")] + ["input_size"]


def _changed(value):
    if isinstance(value, list):
        return [v + 16 for v in value]
    if isinstance(value, float):
        return round(value / 2 + 0.05, 4)
    return value + 3


@pytest.mark.parametrize("key", GENERATOR_KEYS)
def test_each_generator_setting_changes_the_key(key):
    base = Config()
    other = dataclasses.replace(base, **{key: _changed(getattr(base, key))})
    assert synthetic_spec(other).key() != synthetic_spec(base).key(), key


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(SyntheticSpec)])
def test_each_spec_field_changes_the_key(field):
    spec = synthetic_spec(Config())
    other = dataclasses.replace(spec, **{field: _changed(getattr(spec, field))})
    assert other.key() != spec.key(), field


@pytest.mark.parametrize("key", [f for f in Config.field_names() if f not in GENERATOR_KEYS])
def test_other_settings_keep_the_cached_set(key):
    base = Config()
    value = getattr(base, key)
    if isinstance(value, bool):
        changed = not value
    elif isinstance(value, (int, float)):
        changed = value + 1
    elif isinstance(value, str):
        changed = value + "x"
    else:
        changed = list(value) + list(value[:1])
    assert synthetic_spec(dataclasses.replace(base, **{key: changed})).key() == synthetic_spec(base).key(), key
