"""AWS CDK app for the video pipeline: network, data and compute stacks (see docs/DEPLOY.md)."""
