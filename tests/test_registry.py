"""ufl.registry.Registry (names -> objects) and the model registry built on it."""

import pytest

from ufl.errors import UflError
from ufl.registry import Registry


def test_register_bare_and_as_a_decorator_then_get():
    things = Registry("thing")

    @things.register("b-thing")
    class B:
        pass

    def make_a():
        return "a"

    assert things.register("a-thing", make_a) is make_a       # bare use returns the object
    assert B.__name__ == "B"                                   # the decorator returns the class itself
    assert things.get("a-thing") is make_a and things.get("b-thing") is B
    assert things.names() == ["a-thing", "b-thing"] and list(things) == ["a-thing", "b-thing"]
    assert len(things) == 2 and "a-thing" in things and "c-thing" not in things


def test_names_are_listed_sorted_whatever_the_registration_order():
    things = Registry("thing")
    for name in ("zeta", "alpha", "mu"):
        things.register(name, name.upper())
    assert things.names() == ["alpha", "mu", "zeta"] and list(things) == ["alpha", "mu", "zeta"]
    assert things.get("mu") == "MU"


def test_a_duplicate_name_is_refused_and_the_first_entry_kept():
    things = Registry("thing")
    things.register("one", 1)
    with pytest.raises(ValueError, match="thing 'one' is already registered"):
        things.register("one", 2)
    with pytest.raises(ValueError, match="already registered"):
        @things.register("one")
        class Other:
            pass
    assert things.get("one") == 1 and len(things) == 1


def test_an_unknown_name_is_a_ufl_error_listing_the_known_ones():
    things = Registry("gadget")
    with pytest.raises(UflError, match=r"unknown gadget 'x'; known: none"):
        things.get("x")
    things.register("b", 2)
    things.register("a", 1)
    with pytest.raises(UflError) as error:
        things.get("c")
    assert str(error.value) == "unknown gadget 'c'; known: a, b"
    assert error.value.__suppress_context__  # one clean line, no KeyError chained behind it


def test_registries_are_independent():
    first, second = Registry("x"), Registry("x")
    first.register("a", 1)
    assert "a" not in second and len(second) == 0
    second.register("a", 2)  # the same name in another registry is no duplicate
    assert first.get("a") == 1 and second.get("a") == 2


def test_the_model_registry_holds_the_cli_choices():
    from ufl.model_names import MODEL_NAMES
    from ufl.models import MODELS, MTAN, Medusa, build_model

    assert sorted(MODELS) == sorted(MODEL_NAMES)
    assert MODELS.get("medusa") == Medusa.build and MODELS.get("mtan") is MTAN
    with pytest.raises(UflError, match=r"unknown model 'medusa2'; known: .*medusa, medusa-no-ip"):
        build_model("medusa2", backbone=None, out_channels={"semseg": 40})
