"""Tests of the SR toolkit (nasengine.sr)."""
