.PHONY: test check demo bench bench-smoke
test:        ; bash scripts/test
check:       ; bash scripts/check
demo:        ; bash scripts/demo
bench:       ; bash scripts/bench
bench-smoke: ; bash scripts/bench --smoke
