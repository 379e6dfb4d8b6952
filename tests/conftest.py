"""Fixtures shared by the cross-service suites under tests/."""

from tests.stack.fixtures import stack_infrastructure

__all__ = ["stack_infrastructure"]
