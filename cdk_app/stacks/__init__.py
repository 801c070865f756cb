"""Stacks split by lifecycle: network (rarely changes), data (outlives deploys), compute (changes often)."""
from .compute import ComputeStack
from .data import DataStack
from .network import NetworkStack

__all__ = ["ComputeStack", "DataStack", "NetworkStack"]
