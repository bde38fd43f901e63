#!/usr/bin/env bash
# Install Prometheus' promtool from the Go module proxy into a per-version cache; print its path.
#
# Why: promtool checks the chart's alert rules (`promtool check rules`), runs their unit
# tests (`promtool test rules`) and parses the dashboards' PromQL
# (tests/telemetry/test_dashboards.py). Prometheus ships it as a prebuilt download, which
# tests and CI here cannot reach, so it is built from the module proxy. Prometheus' go.mod
# has replace directives, which `go install pkg@version` refuses, so the build goes
# through a throwaway module that requires it.
#
# Usage:
#   hack/promtool.sh           install if needed; print the path of promtool on stdout
#   hack/promtool.sh --check   print the path if installed, else exit 1 (needs no Go)
#
# Environment:
#   SMSMESH_PROMTOOL_VERSION  Go module version of github.com/prometheus/prometheus
#                             (v0.305.0 is Prometheus 3.5; default below)
#   SMSMESH_PROMTOOL_CACHE    install directory (default ~/.cache/smsmesh/promtool/<version>)
#
# Idempotent and safe to run concurrently (flock). A cold build takes about five minutes.
# Only stdout carries the result; progress goes to stderr.
set -euo pipefail
{

version="${SMSMESH_PROMTOOL_VERSION:-v0.305.0}"
cache="${SMSMESH_PROMTOOL_CACHE:-$HOME/.cache/smsmesh/promtool/$version}"
promtool="$cache/promtool"
mode="${1:-install}"

log() { printf 'promtool.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
case "$mode" in install | --check) ;; *) die "unknown argument: $mode (see the header of $0)" ;; esac

stamp="promtool $version"
is_installed() { [[ -x "$promtool" && "$(cat "$cache/.stamp" 2>/dev/null)" == "$stamp" ]]; }

if is_installed; then echo "$promtool"; exit 0; fi
[[ "$mode" == --check ]] && { log "promtool $version not installed in $cache"; exit 1; }
command -v go >/dev/null || die "go is not installed"

mkdir -p "$cache"
if command -v flock >/dev/null; then
    exec 9>"$cache/.lock"
    flock -w 1800 9 || die "timed out waiting for another install holding $cache/.lock"
fi
if is_installed; then echo "$promtool"; exit 0; fi

log "building promtool ($version) into $cache (from the Go module proxy; cold: minutes)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
    cd "$work"
    go mod init smsmesh.local/promtool >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "github.com/prometheus/prometheus/cmd/promtool@$version" >&2
    CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath" \
        go build -ldflags "-s -w" -o "$promtool" github.com/prometheus/prometheus/cmd/promtool >&2
)
"$promtool" --help >/dev/null || die "the built promtool does not run"
echo "$stamp" >"$cache/.stamp"
echo "$promtool"

exit 0
}
