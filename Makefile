# The two commands of the README, and a few conveniences.
.PHONY: lab lab-down test test-quick bench

lab:            ## bring up the container lab and run site.yml against it
	bash scripts/lab.sh up

lab-down:       ## remove the lab containers, network and volume
	bash scripts/lab.sh down

test:           ## every test: lint, syntax, unit, integration, molecule
	bash scripts/test.sh

test-quick:     ## everything but the molecule scenarios
	bash scripts/test.sh --quick
