"""The nasengine pytest plugin (entry point ``pytest11``): fixtures and options for plugin authors' tests.

* ``--nasengine-examples N`` — hypothesis examples per property of the contract tests
  (:class:`nasengine.testing.contract.SearchSpaceContract`; build-and-run properties get proportionally
  fewer). Without it each contract class uses its own ``max_examples``.
* fixture ``nasengine_plugins`` (session) — the loaded :class:`nasengine.plugins.Plugins` (registries of
  every role, plugin versions).
* fixture ``registered_space_names`` (session) — the names of the registered search spaces, to parametrize
  registry-wide checks.
* fixture ``nasengine_examples`` — the ``--nasengine-examples`` value, or ``None``.

Without the entry point (a source checkout), enable it with ``-p nasengine.testing.pytest_plugin`` or
``pytest_plugins = ["nasengine.testing.pytest_plugin"]`` in a root ``conftest.py``.
"""
from __future__ import annotations

import pytest

__all__ = ["pytest_addoption", "nasengine_plugins", "registered_space_names", "nasengine_examples"]


from nasengine.cli import _positive_int  # noqa: E402  (the CLI's argument type: one definition)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("nasengine", "nasengine contract tests")
    group.addoption(
        "--nasengine-examples",
        dest="nasengine_examples",
        type=_positive_int,
        default=None,
        metavar="N",
        help="hypothesis examples per property of the nasengine contract tests (default: each contract "
             "class's max_examples)",
    )


@pytest.fixture(scope="session")
def nasengine_plugins():
    """The loaded plugin facade (:func:`nasengine.plugins.get_plugins`)."""
    from nasengine.plugins import get_plugins

    return get_plugins()


@pytest.fixture(scope="session")
def registered_space_names(nasengine_plugins) -> list[str]:
    """Sorted names of every registered search space."""
    return nasengine_plugins.spaces.names()


@pytest.fixture
def nasengine_examples(request) -> int | None:
    """The ``--nasengine-examples`` value (``None`` when not given)."""
    return request.config.getoption("nasengine_examples", default=None)
