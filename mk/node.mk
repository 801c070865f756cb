# The pinned CLIs (package.json + package-lock.json): aws-cdk and cdk8s-cli, installed with `npm ci`.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node_modules: node_modules/.installed
.PHONY: node_modules
