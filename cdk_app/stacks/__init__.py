"""Stacks split by lifecycle: network (rarely changes), data (outlives deploys), compute (changes often);
deploy access (the CI role, optional) changes only by hand."""

from .compute import ComputeStack
from .data import DataStack
from .deploy_access import DeployAccessStack
from .network import NetworkStack

__all__ = ["ComputeStack", "DataStack", "DeployAccessStack", "NetworkStack"]
