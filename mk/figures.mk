# The committed throughput figures per CPU class (services/deploy/vidpipe_deploy/figures.json) that size the
# inference pod, the KEDA thresholds and the fleet planner.
#   make bench bench-record                         # measure this machine, then rewrite its class's figures
#   make bench-record CPU_CLASS=intel-xeon-sapphire-rapids   # where the CPU's flags do not say its class
#   make plan CAMERAS=200 FPS=5 NODE=c7i.2xlarge    # what a fleet needs and costs a month
#   make plan-readme                                # README.md's fleet table, from the planner
BENCH_REPORT ?= bench/results/latest.json
CAMERAS ?= 100
FPS ?= 5
NODE ?= c7i.2xlarge

.PHONY: bench-record plan plan-readme

bench-record: $(VENV)/.installed
	$(PY) -m vidpipe_deploy.sizing --record $(BENCH_REPORT) $(if $(CPU_CLASS),--cpu-class $(CPU_CLASS))
	$(PY) -m vidpipe_deploy.plan --readme

plan: $(VENV)/.installed
	$(PY) -m vidpipe_deploy.plan --cameras $(CAMERAS) --fps $(FPS) --node $(NODE) $(if $(ALLOW_ESTIMATES),--allow-estimates)

plan-readme: $(VENV)/.installed
	$(PY) -m vidpipe_deploy.plan --readme
