"""What every stack of the app shares."""

from __future__ import annotations

from typing import Any

from aws_cdk import Fn, Stack
from constructs import Construct

from ..config import PlatformConfig


class PlatformStack(Stack):
    """A stack that spreads over `maxAzs` availability zones even when environment-agnostic.

    Without an account/region, CDK picks 2 AZs; the AZs are instead taken from Fn::GetAZs at
    deploy time, so synth stays offline (no AZ lookup, no cdk.context.json) and the broker count
    equals brokersPerAz x maxAzs in every region with that many AZs.
    """

    def __init__(self, scope: Construct, id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config

    @property
    def availability_zones(self) -> list[str]:
        return [Fn.select(i, Fn.get_azs()) for i in range(self.config.max_azs)]
