"""nasengine test suite."""
