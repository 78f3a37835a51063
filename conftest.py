"""Configuration of every test in the repository (the engine's and the plugins'): a time limit per test."""
pytest_plugins = ["tests.time_limit"]
