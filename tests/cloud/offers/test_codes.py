from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from cloud.offers.codes import (
    ALPHABET,
    CODE_MAX,
    FALLBACK_PREFIX,
    RANDOM_LENGTH,
    code_prefix,
    is_code,
    new_code,
    normalize_code,
)
from cloud.offers.models import OFFER_KEY_PATTERN
from cloud.templates.context import COUPON_CODE_MAX, CouponCode

TEMPLATE_CODE: TypeAdapter[str] = TypeAdapter(CouponCode)
offer_keys = st.from_regex(OFFER_KEY_PATTERN, fullmatch=True)


def test_the_alphabet_has_no_look_alikes_and_codes_fit_the_template_field() -> None:
    assert len(set(ALPHABET)) == 32
    assert not set("ILOU") & set(ALPHABET)
    assert CODE_MAX == COUPON_CODE_MAX
    assert code_prefix("dryers-20") == "DRYERS20"
    assert code_prefix("black.friday.2026") == "BLACKFRI"
    assert code_prefix("---") == FALLBACK_PREFIX


@given(key=offer_keys)
def test_every_offer_key_makes_codes_the_templates_accept(key: str) -> None:
    code = new_code(key)
    assert TEMPLATE_CODE.validate_python(code) == code
    prefix, random_part = code.rsplit("-", 1)
    assert prefix == code_prefix(key)
    assert len(random_part) == RANDOM_LENGTH
    assert set(random_part) <= set(ALPHABET)
    assert is_code(code)
    assert is_code(normalize_code(f"  {code.lower()}\t"))


def _template_accepts(text: str) -> bool:
    try:
        TEMPLATE_CODE.validate_python(text)
    except ValidationError:
        return False
    return True


@given(text=st.one_of(st.text(max_size=30), st.text(alphabet="AZ09-az _é\n", max_size=30)))
def test_codes_looked_up_are_those_the_templates_accept_without_stray_dashes(text: str) -> None:
    normalized = normalize_code(text)
    well_formed = _template_accepts(normalized) and "--" not in normalized and not (
        normalized.startswith("-") or normalized.endswith("-")
    )
    assert is_code(normalized) == well_formed


def test_codes_do_not_repeat() -> None:
    codes = {new_code("dryers-20") for _ in range(5000)}
    assert len(codes) == 5000
