"""Fixtures of the engine-core tests: the fake plugin installed in this process and in worker processes."""
from __future__ import annotations

import warnings

import pytest

FAKE_PLUGIN = "tests.engine.fake_plugin"


@pytest.fixture
def fake_plugins(monkeypatch):
    """Install plugins made of the built-ins plus :mod:`tests.engine.fake_plugin`, here and (through
    ``NASENGINE_PLUGINS_EXTRA``) in every worker process; restore the previous ones afterwards."""
    import nasengine.plugins as np_plugins
    from nasengine.executors import clear_instance_cache
    from tests.engine import fake_plugin

    monkeypatch.setenv("NASENGINE_PLUGINS_EXTRA", FAKE_PLUGIN)
    monkeypatch.setenv("NASENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    with warnings.catch_warnings():
        # The built-in plugin may be incomplete while the engine is being written; the fake plugin fills in.
        warnings.simplefilter("ignore", RuntimeWarning)
        plugins = np_plugins.Plugins(autoload=False, extra=(fake_plugin,))
    previous = np_plugins.reset_plugins(plugins)
    clear_instance_cache()
    yield plugins
    clear_instance_cache()
    np_plugins.reset_plugins(previous)
