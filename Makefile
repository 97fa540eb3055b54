# Two commands on a fresh machine: `make demo` runs the procedure end to end
# on the embedded default; `make test` installs what the tests need and runs them.
.PHONY: demo test build bench bench-dovecot fmt crash

demo:
	go run ./cmd/secondopinion demo --out demo-out

test:
	./scripts/test.sh

build:
	go build -o secondopinion ./cmd/secondopinion

bench:
	go test -run '^$$' -bench . -benchmem ./...

# The daemon through a private Dovecot (needs root and dovecot), its reaction
# next to Dovecot's own notification delay (docs/PERFORMANCE.md).
# VIA=-dovecot.append delivers by IMAP APPEND, as `bench --imap` does;
# VIA=-dovecot.postfix has the daemon submit through a private Postfix.
CASES ?= 40
CONCURRENCY ?= 4
VIA ?=
bench-dovecot:
	go test -count=1 -run '^$$' -bench Dovecot -benchtime 1x -timeout 30m ./internal/bench \
		-dovecot.cases $(CASES) -dovecot.concurrency $(CONCURRENCY) $(VIA)

fmt:
	gofmt -w .

# The long crash test: the daemon killed with SIGKILL CRASH_KILLS times
# under load (the short version, 20 kills, runs with the tests), on the
# embedded mail servers and then with the service's mailbox on Dovecot.
CRASH_KILLS ?= 200
crash:
	CRASH_KILLS=$(CRASH_KILLS) go test -count=1 -run 'TestKill9UnderLoad(Dovecot)?$$' -v -timeout 60m ./internal/crashtest
