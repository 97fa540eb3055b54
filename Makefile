# Two commands on a fresh machine: `make demo` runs the procedure end to end
# on the embedded default; `make test` installs what the tests need and runs them.
.PHONY: demo test build bench fmt

demo:
	go run ./cmd/secondopinion demo --out demo-out

test:
	./scripts/test.sh

build:
	go build -o secondopinion ./cmd/secondopinion

bench:
	go test -run '^$$' -bench . -benchmem ./...

fmt:
	gofmt -w .
