#!/usr/bin/env bash
# The test command (README: `make test`). On a fresh Debian machine it
# installs the real servers the tests use (Dovecot, Postfix, GnuPG, poppler,
# qpdf), fetches the Go modules, then runs go vet, a short fuzz run of every
# parser, and the whole test suite with the race detector and shuffled
# order. Nothing is started here: each test starts its own private server
# instance on free loopback ports and stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for bin in dovecot postfix gpg pdftotext qpdf; do
	command -v "$bin" >/dev/null 2>&1 || need+=("$bin")
done
if ((${#need[@]})); then
	echo "installing real servers and tools for the tests (missing: ${need[*]})"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	echo "postfix postfix/main_mailer_type select Local only" | $SUDO debconf-set-selections
	echo "postfix postfix/mailname string ci.example.test" | $SUDO debconf-set-selections
	$SUDO apt-get install -y -qq --no-install-recommends \
		dovecot-imapd postfix gnupg poppler-utils qpdf >/dev/null
fi

go mod download
echo "go vet ./..."
go vet ./...
# A short run of every parser's fuzz test: a crash found here fails CI and
# leaves the input under the package's testdata/fuzz for a regression test.
# The budget is a count of executions, not a duration: with a duration, Go
# 1.26's fuzz coordinator can report "context deadline exceeded" at the end
# of the time without any failing input (go.dev/issue/75804, fixed in Go
# 1.27). A hanging input then shows as the go test timeout, with a stack.
fuzztime="${FUZZTIME:-10000x}"
for target in \
	internal/message:FuzzParse \
	internal/message:FuzzExtractReply \
	internal/message:FuzzParseAnswer \
	internal/message:FuzzBase64 \
	internal/procedure:FuzzDecide \
	internal/pgpmime:FuzzRead \
	internal/mailout:FuzzReadReply \
	internal/mailout:FuzzDotWriter \
	internal/engine:FuzzHeaderBlock \
	internal/token:FuzzVerify; do
	pkg="${target%%:*}" fn="${target#*:}"
	echo "fuzz $fn ($pkg, $fuzztime)"
	if ! out=$(go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s -timeout 3m "./$pkg" 2>&1); then
		echo "$out"
		exit 1
	fi
done
echo "fuzzing found nothing"

# The whole suite last, so that its summary closes the output.
echo "go test -race -shuffle=on ./..."
go test -race -shuffle=on -timeout 12m ./...
