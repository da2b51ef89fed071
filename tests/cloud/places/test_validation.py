"""Every coordinate, accuracy and id is checked, and a refusal names its field."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.places.validation import (
    MAX_ACCURACY_M,
    PlaceError,
    check_accuracy,
    check_id,
    check_lat_lon,
    check_segment,
)


def test_place_error_is_a_value_error_naming_the_field() -> None:
    error = PlaceError("shape.circle.radius_m", "must be > 0")
    assert isinstance(error, ValueError)
    assert (error.field, error.reason) == ("shape.circle.radius_m", "must be > 0")
    assert str(error) == "shape.circle.radius_m: must be > 0"


@pytest.mark.parametrize(("lat", "lon"), [(0.0, 0.0), (90.0, 180.0), (-90.0, -180.0),
                                          (40, -3), (89.999999, 179.999999)])
def test_valid_coordinates_come_back_as_floats(lat: float, lon: float) -> None:
    checked = check_lat_lon(lat, lon)
    assert checked == (float(lat), float(lon))
    assert all(type(value) is float for value in checked)


@pytest.mark.parametrize(("lat", "lon", "field"), [
    (90.0001, 0.0, "lat"), (-91.0, 0.0, "lat"), (0.0, 180.5, "lon"), (0.0, -181.0, "lon"),
    (math.nan, 0.0, "lat"), (0.0, math.nan, "lon"), (math.inf, 0.0, "lat"),
    (0.0, -math.inf, "lon"), (True, 0.0, "lat"), ("40.1", 0.0, "lat"), (0.0, None, "lon"),
    (1e308 * 10, 0.0, "lat"),
])
def test_invalid_coordinates_are_refused(lat: object, lon: object, field: str) -> None:
    with pytest.raises(PlaceError) as error:
        check_lat_lon(lat, lon)
    assert error.value.field == field


def test_the_field_prefix_is_kept() -> None:
    with pytest.raises(PlaceError) as error:
        check_lat_lon(0.0, 200.0, "shape.coordinates[0][2]")
    assert error.value.field == "shape.coordinates[0][2].lon"


@pytest.mark.parametrize("accuracy", [0.0, 0, 4.5, MAX_ACCURACY_M])
def test_accuracies_from_exact_to_the_limit_pass(accuracy: float) -> None:
    assert check_accuracy(accuracy) == float(accuracy)


@pytest.mark.parametrize("accuracy", [-0.001, -5.0, MAX_ACCURACY_M + 0.1, 1e9, math.nan,
                                      math.inf, False, "10", None])
def test_negative_absurd_or_non_numeric_accuracies_are_refused(accuracy: object) -> None:
    with pytest.raises(PlaceError) as error:
        check_accuracy(accuracy)
    assert error.value.field == "accuracy_m"


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                 st.text(max_size=3), st.none(), st.booleans()),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()))
def test_coordinate_checks_raise_nothing_but_place_error(lat: object, lon: object) -> None:
    try:
        checked_lat, checked_lon = check_lat_lon(lat, lon)
    except PlaceError:
        return
    assert -90.0 <= checked_lat <= 90.0
    assert -180.0 <= checked_lon <= 180.0


def test_ids_and_segments() -> None:
    assert check_id("subject", "customer:1234@app") == "customer:1234@app"
    assert check_segment("tenant", "acme-shop_1") == "acme-shop_1"
    for bad in ["", " x", "x/y", "a" * 129, "ñ", None, 5]:
        with pytest.raises(PlaceError) as error:
            check_id("subject", bad)
        assert error.value.field == "subject"
    for bad in ["", "Acme", "acme/1", "a" * 65, "-acme", None]:
        with pytest.raises(PlaceError) as error:
            check_segment("tenant", bad)
        assert error.value.field == "tenant"
