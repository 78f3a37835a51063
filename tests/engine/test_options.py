"""The public option checks of :mod:`nasengine.options`, declared ``Options`` classes, ``construct`` and
``declared_options`` (issue 10 item 3)."""
from __future__ import annotations

import math
import pickle

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nasengine.errors import ConfigError
from nasengine.options import (
    Check,
    OptionDoc,
    OptionError,
    anything,
    check_options,
    choice,
    construct,
    declared_options,
    flag,
    mapping,
    option,
    optional,
    options_class,
    positive,
    probability,
    read_options,
    real,
    sequence,
    string,
    whole,
)


# ---- the checks ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("check, good, normalised", [
    (whole(1), 3, 3), (whole(1), 3.0, 3), (whole(0, 5), 0, 0), (whole(), -7, -7),
    (real(0.0, lo_open=True), 2, 2.0), (positive, 1e-9, 1e-9), (real(0.0, 1.0, hi_open=True), 0.0, 0.0),
    (probability, 1, 1.0), (flag, False, False), (choice("a", "b"), "b", "b"), (choice(2, 3), 2.0, 2),
    (optional(whole(1)), None, None), (optional(whole(1)), 4, 4),
    (sequence(whole(1)), [1, 2], (1, 2)), (sequence(whole(1), length=2), (3, 4), (3, 4)),
    (mapping(string(), real(0.0)), {"gpu": 1}, {"gpu": 1.0}), (string(), "x", "x"), (string(empty=True), "", ""),
    (anything, object, object),
])
def test_checks_accept_and_normalise(check, good, normalised):
    assert check.value("k", good) == normalised
    check(None, _Attr("k"), good)  # as an attrs validator


class _Attr:
    def __init__(self, name):
        self.name = name


@pytest.mark.parametrize("check, bad, reason", [
    (whole(1), 0, "must be a whole number >= 1, got 0"),
    (whole(1), True, "must be a whole number >= 1, got True"),
    (whole(1), 2.5, "must be a whole number >= 1, got 2.5"),
    (whole(1), "3", "must be a whole number >= 1, got '3'"),
    (whole(1, 4), 5, "must be a whole number between 1 and 4, got 5"),
    (positive, 0, "must be a number > 0, got 0"),
    (real(), math.nan, "must be a number, got nan"),
    (real(0.0, 1.0, hi_open=True), 1.0, "must be a number in [0, 1), got 1.0"),
    (probability, 1.5, "must be a probability in [0, 1], got 1.5"),
    (flag, 1, "must be true or false, got 1"),
    (choice("a", "b"), "c", "must be one of 'a', 'b', got 'c'"),
    (choice(0, 1), False, "must be one of 0, 1, got False"),
    (optional(whole(1)), 0, "must be none or a whole number >= 1, got 0"),
    (sequence(whole(1), min_length=1), [], "must be a non-empty list, each a whole number >= 1, got []"),
    (sequence(whole(1)), "12", "must be a list, each a whole number >= 1, got '12'"),
    (sequence(whole(1)), [1, 0], "must be a list, each a whole number >= 1; 0 is not a whole number >= 1"),
    (sequence(whole(1), distinct=True), [1, 1], "repeated entries"),
    (sequence(whole(1), length=2), [1], "must be a list of 2, each a whole number >= 1, got [1]"),
    (mapping(string(), real(0.0)), {"gpu": -1}, "'gpu': -1 is not"),
    (mapping(string(), real(0.0)), ["gpu"], "must be a mapping of a non-empty string to a number >= 0"),
    (string(), " ", "must be a non-empty string, got ' '"),
    (whole(1).where(lambda v: v % 2, "an odd whole number"), 4, "must be an odd whole number, got 4"),
    (Check("a thing", int), "x", "must be a thing, got 'x'"),  # a test raising ValueError refuses
])
def test_checks_refuse_with_one_line_naming_the_option(check, bad, reason):
    with pytest.raises(OptionError) as info:
        check.value("k", bad)
    err = info.value
    assert err.option == "k" and reason in err.reason and err.role is None
    assert str(err) == f"k: {err.reason}" and "\n" not in str(err)
    assert isinstance(err, ConfigError)
    assert str(err.under("space")) == f"space.k: {err.reason}"
    assert pickle.loads(pickle.dumps(err.under("space"))).option == "k"


@given(st.integers(-10, 10), st.integers(-10, 10), st.integers(-20, 20))
def test_whole_bounds(lo, hi, v):
    ok = lo <= v <= hi
    if ok:
        assert whole(lo, hi).value("k", v) == v
    else:
        with pytest.raises(OptionError):
            whole(lo, hi).value("k", v)


# ---- declared options ------------------------------------------------------------------------------------------
class Role:
    @attrs.frozen(kw_only=True)
    class Options:
        depth: int = option(3, whole(1), help="layers")
        widths: tuple = option((8, 16), sequence(whole(1), min_length=1), help="widths")

        def __attrs_post_init__(self):
            if self.depth > 10:
                raise OptionError("depth", f"must be <= 10 with these widths, got {self.depth}")

    def __init__(self, first=None, **options):
        self.first = first
        self.options = read_options("space", type(self).Options, options, name="role")


class Child(Role):
    @attrs.frozen(kw_only=True)
    class Options(Role.Options):
        depth: int = option(5, whole(2), help="more layers")
        act: str = option("relu", choice("relu", "tanh"), help="activation")


class OwnInit(Child):
    def __init__(self, first=None, *, only: int = 1):
        super().__init__(first)


def test_declared_options_are_read_and_normalised():
    r = Child(depth=4.0, widths=[8])
    assert r.options == Child.Options(depth=4, widths=(8,), act="relu")
    assert Child().options.depth == 5  # the subclass's default wins
    with pytest.raises(OptionError, match=r"^space\.depthh: unknown option of search space 'role'; did you mean "
                                          r"'depth'\? known: act, depth, widths$"):
        Child(depthh=3)
    with pytest.raises(OptionError, match=r"^space\.zzz: unknown option of search space 'role'; known: "):
        Child(zzz=3)
    with pytest.raises(OptionError, match=r"^space\.depth: must be a whole number >= 2, got 1$"):
        Child(depth=1)
    with pytest.raises(OptionError, match=r"^space\.depth: must be <= 10 with these widths, got 11$"):
        Child(depth=11)


def test_options_class_follows_the_mro_until_an_own_init():
    assert options_class(Role) is Role.Options and options_class(Child) is Child.Options
    assert options_class(type("Sub", (Child,), {})) is Child.Options
    assert options_class(OwnInit) is None  # its own __init__ says what it takes
    assert options_class(lambda **kw: kw) is None


def test_declared_options_lists_fields_or_the_signature():
    docs = declared_options(Child)
    assert [d.name for d in docs] == ["widths", "depth", "act"]
    depth = next(d for d in docs if d.name == "depth")
    assert depth == OptionDoc("depth", 5, "more layers", "a whole number >= 2")
    assert next(d for d in docs if d.name == "widths").default == [8, 16]  # plain data

    def factory(space, *, rate: float = 0.5, name="x", **extra):
        return None

    assert declared_options(factory, skip=["space"]) == [OptionDoc("rate", 0.5, "", "float"),
                                                          OptionDoc("name", "x", "", "")]
    assert declared_options(OwnInit) == [OptionDoc("first", None, "", ""), OptionDoc("only", 1, "", "int")]

    @attrs.frozen(kw_only=True)
    class Needs:
        objectives: tuple = option(check=sequence(anything, min_length=1), help="what to optimise")

    class NeedsRole:
        Options = Needs

    assert declared_options(NeedsRole) == [OptionDoc("objectives", None, "what to optimise",
                                                 "a non-empty list, each any value", required=True)]
    with pytest.raises(OptionError, match=r"^reward\.objectives: is required by reward 'r'$"):
        read_options("reward", Needs, {}, name="r")


# ---- construct -------------------------------------------------------------------------------------------------
def test_construct_declared():
    r = construct("space", "role", Child, {"depth": 3}, "positional")
    assert r.first == "positional" and r.options.depth == 3
    with pytest.raises(OptionError, match=r"^space\.depthh: unknown option of search space 'role'; did you mean"):
        construct("space", "role", Child, {"depthh": 3})
    with pytest.raises(OptionError, match=r"^space\.act: must be one of 'relu', 'tanh', got 'gelu'$"):
        check_options("space", "role", Child, {"act": "gelu"})


def test_construct_by_signature():
    def reward(*, weight: float = 1.0, metric: str = "psnr"):
        if not isinstance(weight, (int, float)):
            raise TypeError(f"weight must be a number, not {type(weight).__name__}")
        return weight, metric

    assert construct("reward", "r", reward, {"weight": 2}) == (2, "psnr")
    with pytest.raises(OptionError, match=r"^reward\.wieght: unknown option of reward 'r'; did you mean 'weight'\? "
                                          r"known: metric, weight$"):
        construct("reward", "r", reward, {"wieght": 2})
    # a TypeError the factory raises because of an option: one line naming the option
    with pytest.raises(OptionError, match=r"^reward\.weight: weight must be a number, not str \(got 'x'\)$"):
        construct("reward", "r", reward, {"weight": "x"})


def test_construct_fixed_arguments_and_passing_errors():
    def controller(space, reward, *, seed=0, population_size=8):
        if population_size == 99:
            raise RuntimeError("a bug, not an option problem")
        return space, reward, seed, population_size

    assert construct("controller", "c", controller, {"population_size": 3}, "S", "R", seed=5) == ("S", "R", 5, 3)
    with pytest.raises(OptionError, match=r"^controller\.seed: is set by the run"):
        construct("controller", "c", controller, {"seed": 1}, "S", "R", seed=5)
    with pytest.raises(OptionError, match=r"^controller\.in_flight: unknown option of controller 'c'; known: "
                                          r"population_size$"):
        construct("controller", "c", controller, {"in_flight": 2}, "S", "R", seed=0)
    with pytest.raises(RuntimeError):  # other exceptions pass
        construct("controller", "c", controller, {"population_size": 99}, "S", "R")

    def kwargs_only(**options):
        return int(options["n"]) + 1

    with pytest.raises(ConfigError, match=r"^evaluator 'e': int\(\) argument .* \(options: n=\[1\]\)$"):
        construct("evaluator", "e", kwargs_only, {"n": [1]})

    def names_itself(**options):
        raise ConfigError("steps: must be an integer >= 1, got 'x'")

    with pytest.raises(OptionError, match=r"^evaluator\.steps: must be an integer >= 1, got 'x'$"):
        construct("evaluator", "e", names_itself, {"steps": "x"})


def test_registered_roles_declare_their_options():
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    for registry, name in [(plugins.spaces, "simple"), (plugins.controllers, "nsga2"), (plugins.controllers, "random"),
                           (plugins.controllers, "evolution"), (plugins.cost_models, "analytic"),
                           (plugins.rewards, "objectives"), (plugins.executors, "inline"),
                           (plugins.executors, "process")]:
        docs = declared_options(registry.get(name))
        assert options_class(registry.get(name)) is not None, name
        assert all(d.help and d.type for d in docs), name


def test_method_options_lists_every_role_with_preset_values():
    from nasengine.options import method_options
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    roles = {r["role"]: r for r in method_options(plugins, plugins.methods.get("simple"), "smoke")}
    assert set(roles) == {"space", "controller", "evaluator", "reward", "cost", "executor"}
    assert roles["controller"]["name"] == "nsga2"
    pop = next(o for o in roles["controller"]["options"] if o["name"] == "population_size")
    assert pop["default"] == 16 and pop["set"] and pop["preset"] == 6 and pop["help"]
    xo = next(o for o in roles["controller"]["options"] if o["name"] == "crossover_prob")
    assert xo["default"] == 0.9 and not xo["set"] and xo["preset"] is None
    assert roles["executor"]["name"] == "process"
    assert {"workers", "threads", "task_timeout"} <= {o["name"] for o in roles["executor"]["options"]}
