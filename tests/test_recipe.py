import pytest

from synth.recipe import Recipe, RecipeError, list_recipes, load_recipe, parse_set


def test_ftsr_recipe_loads_with_defaults_matching_the_dataclass():
    r = load_recipe("ftsr")
    assert isinstance(r, Recipe)
    assert r.backgrounds.hr_size == 512 and r.degrade.scale == 4 and r.degrade.preset == "realesrgan"
    assert r.text.instances == (1, 5)
    assert "ftsr" in list_recipes()
    assert len(r.hash()) == 16


def test_set_overrides_are_typed_and_change_the_hash():
    base = load_recipe("ftsr")
    r = load_recipe("ftsr", ["degrade.scale=8", "text.instances=[2, 3]", "seed=7"])
    assert r.degrade.scale == 8 and r.text.instances == (2, 3) and r.seed == 7
    assert r.hash() != base.hash()


@pytest.mark.parametrize("sets, needle", [
    (["degrade.scal=8"], "did you mean 'scale'"),
    (["degrade.scale=four"], "expected an integer"),
    (["text.instances=[1, 2, 3]"], "expected 2 values"),
    (["backgrounds.ocr_reject=maybe"], "expected true/false"),
    (["nonsense"], "expected KEY=VALUE"),
])
def test_bad_overrides_name_the_key_and_problem(sets, needle):
    with pytest.raises(RecipeError, match=needle):
        load_recipe("ftsr", sets)


def test_unknown_recipe_suggests_a_close_name():
    with pytest.raises(RecipeError, match="did you mean 'ftsr'"):
        load_recipe("ftrs")


def test_parse_set_builds_nested_dicts():
    assert parse_set(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
