#!/usr/bin/env bash
# Install helm from the Go module proxy into a per-version cache; print the binary's path.
#
# Why from Go modules: helm ships as a prebuilt download from its own site, which tests and
# CI here cannot reach; `go install helm.sh/helm/v3/cmd/helm@vX` builds the same program from
# the module proxy (helm's go.mod has no replace directives, so plain `go install` works).
#
# Usage:
#   hack/helm.sh           install if needed; print the path of the helm binary on stdout
#   hack/helm.sh --check   print the path if installed, else exit 1 (needs no Go)
#
# Environment:
#   SMSMESH_HELM_VERSION  helm release to install (default below)
#   SMSMESH_HELM_CACHE    install directory (default ~/.cache/smsmesh/helm/<version>)
#
# Idempotent: with the binary present it prints the path and returns at once. Concurrent
# runs wait for each other (flock). Only stdout carries the result; progress goes to stderr.
set -euo pipefail
{

version="${SMSMESH_HELM_VERSION:-v3.22.0}"
cache="${SMSMESH_HELM_CACHE:-$HOME/.cache/smsmesh/helm/$version}"
bin="$cache/bin"
helm="$bin/helm"
mode="${1:-install}"

log() { printf 'helm.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
case "$mode" in install | --check) ;; *) die "unknown argument: $mode (see the header of $0)" ;; esac

# The stamp names what was built, so a changed SMSMESH_HELM_VERSION with a custom
# SMSMESH_HELM_CACHE (or a binary built by an older version of this script) is never reused.
stamp="helm $version, release ldflags"
is_installed() { [[ -x "$helm" && "$(cat "$bin/.stamp" 2>/dev/null)" == "$stamp" ]]; }

if is_installed; then echo "$helm"; exit 0; fi
[[ "$mode" == --check ]] && { log "helm $version not installed in $bin"; exit 1; }
command -v go >/dev/null || die "go is not installed (https://go.dev/dl/)"

mkdir -p "$bin"
if command -v flock >/dev/null; then
    exec 9>"$cache/.lock"
    flock -w 1800 9 || die "timed out waiting for another install holding $cache/.lock"
fi
if is_installed; then echo "$helm"; exit 0; fi

log "installing helm $version into $bin (from the Go module proxy; cold: a few minutes)"
# The ldflags are the ones helm's own Makefile sets for a release. Without them `helm version`
# says v3.x-dev, and `helm template`/`helm lint` assume Kubernetes v1.20 (so a chart with
# kubeVersion >=1.30 fails to render): helm derives the default Kubernetes version from the
# k8s.io/client-go it is built with (client-go v0.Y.Z -> Kubernetes 1.Y).
gomod="$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "$gomod" ]] || die "could not download helm.sh/helm/v3@$version from the Go module proxy"
kube_minor="$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2]; exit }' "$gomod")"
[[ "$kube_minor" =~ ^[0-9]+$ ]] || die "no k8s.io/client-go requirement in $gomod"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$kube_minor"
done
GOBIN="$bin" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
    go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
"$helm" version --short >&2
echo "$stamp" >"$bin/.stamp"
echo "$helm"

exit 0
}
