"""The local stack of real servers (``ontheway stack up | down | status``)."""

from ontheway.stack.local import LocalStack, PartStatus

__all__ = ["LocalStack", "PartStatus"]
