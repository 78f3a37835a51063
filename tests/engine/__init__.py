"""Tests of the engine core: store, executors, generational loop."""
