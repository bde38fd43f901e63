#!/usr/bin/env bash
# Build a real kube-apiserver, kubectl and etcd from Go modules, for tests that need a
# real Kubernetes API (CRD validation, server-side apply, RBAC) but no cluster, Docker or kind.
#
# Why a script and not `go install k8s.io/kubernetes/cmd/kube-apiserver@vX`: the kubernetes
# module replaces its k8s.io/* staging modules with ./staging/... paths, and `go install
# pkg@version` refuses modules with replace directives. So we build inside small throwaway
# "tools" modules (hack/kube-tools/*/go.mod) that require k8s.io/kubernetes and pin every
# staging module to its published v0.X.Y twin. etcd has the same problem (its server module
# replaces its sibling modules with ../ paths), hence a second tools module.
#
# Usage:
#   hack/build-kube.sh           build if needed; print the bin directory on stdout
#   hack/build-kube.sh --check   print the bin directory if everything is built, else exit 1
#   hack/build-kube.sh --regen   rewrite hack/kube-tools/*/go.mod and go.sum from upstream
#                                (after changing the versions below or SMSMESH_KUBE_VERSION)
#
# Environment:
#   SMSMESH_KUBE_VERSION  kubernetes release (default: the one pinned in kube-tools/kubernetes)
#   SMSMESH_ETCD_VERSION  etcd release       (default: the one pinned in kube-tools/etcd)
#   SMSMESH_KUBE_CACHE    output directory   (default: ~/.cache/smsmesh/kube/<k8s version>)
#
# Everything built lands under the cache directory, never in the repository; Go's own module
# and build caches stay where `go env GOMODCACHE GOCACHE` says (outside the repository too).
# Only stdout carries the result (the bin directory); progress goes to stderr.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true # stop on failures inside $(...) too (bash 4.4+)
# Braces: bash parses the whole body before running any of it, so editing or checking out this
# file while a (long) build runs cannot change what that build executes.
{

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/kube-tools"
mode="${1:-build}"

log() { printf 'build-kube: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
case "$mode" in build | --check | --regen) ;; *) die "unknown argument: $mode (see the header of $0)" ;; esac

# The version a committed tools go.mod requires for a module ("" when absent).
pinned_version() { # <go.mod> <module path>
    [[ -f "$1" ]] || return 0
    awk -v m="$2" '$1 == "require" && $2 == m { print $3; exit }
                   $1 == m && $2 ~ /^v/       { print $2; exit }' "$1"
}

kube_version="${SMSMESH_KUBE_VERSION:-$(pinned_version "$tools/kubernetes/go.mod" k8s.io/kubernetes)}"
etcd_version="${SMSMESH_ETCD_VERSION:-$(pinned_version "$tools/etcd/go.mod" go.etcd.io/etcd/server/v3)}"
[[ -n "$kube_version" ]] || die "no kubernetes version: set SMSMESH_KUBE_VERSION"
[[ -n "$etcd_version" ]] || die "no etcd version: set SMSMESH_ETCD_VERSION"

cache="${SMSMESH_KUBE_CACHE:-$HOME/.cache/smsmesh/kube/$kube_version}"
bin="$cache/bin"
stamp="kubernetes $kube_version etcd $etcd_version"
binaries=(kube-apiserver kubectl etcd)

is_built() {
    local b
    for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
    [[ "$(cat "$bin/.stamp" 2>/dev/null)" == "$stamp" ]]
}

if [[ "$mode" != --regen ]] && is_built; then
    echo "$bin"
    exit 0
fi
[[ "$mode" == --check ]] && { log "not built yet: $stamp in $bin"; exit 1; }

command -v go >/dev/null || die "go is not installed (https://go.dev/dl/)"

mkdir -p "$cache"
# One build at a time per cache directory (parallel pytest sessions, two terminals).
if command -v flock >/dev/null; then
    exec 9>"$cache/.lock"
    flock -w 7200 9 || die "timed out waiting for another build holding $cache/.lock"
fi
if [[ "$mode" != --regen ]] && is_built; then echo "$bin"; exit 0; fi

export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
export CGO_ENABLED=0 # static binaries, like the official release builds; no C toolchain needed
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
log "$(go version); GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"

# --- go.mod generation (only for --regen or a version the committed files do not pin) -----

# Path of a module's upstream go.mod, fetched through the module proxy.
upstream_gomod() { # <module>@<version>
    local json path
    json="$(cd "$cache" && GOFLAGS='' go mod download -json "$1" || true)"
    path="$(awk -F'"' '$2 == "GoMod" { print $4 }' <<<"$json")"
    [[ -f "$path" ]] || die "could not download $1: $(awk -F'"' '$2 == "Error" { print $4 }' <<<"$json")"
    echo "$path"
}

# The `go` line and any `godebug` line/block of an upstream go.mod, so our build gets the
# same language version and GODEBUG defaults the upstream release is built and tested with.
language_lines() { # <go.mod>
    awk '/^go /            { print; print ""; next }
         /^godebug \(/     { inblock = 1 }
         inblock           { print; if ($0 ~ /^\)/) { inblock = 0; print "" } next }
         /^godebug /       { print; print "" }' "$1"
}

generate_kubernetes_gomod() { # <output go.mod>
    local up staging_version
    up="$(upstream_gomod "k8s.io/kubernetes@$kube_version")"
    staging_version="v0.${kube_version#v1.}" # v1.34.4 -> v0.34.4, published by the publishing-bot
    {
        echo "// Generated by hack/build-kube.sh --regen from k8s.io/kubernetes@$kube_version's go.mod."
        echo "// Each k8s.io staging module that kubernetes replaces with ./staging/... is pinned"
        echo "// to its published $staging_version instead. Do not edit by hand."
        echo "module smsmesh.invalid/kube-tools/kubernetes"
        echo
        language_lines "$up"
        echo "require k8s.io/kubernetes $kube_version"
        echo
        echo "replace ("
        awk -v v="$staging_version" \
            '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }' "$up"
        echo ")"
    } >"$1"
    grep -q "k8s.io/apimachinery => " "$1" || die "found no staging replace block in $up"
}

generate_etcd_gomod() { # <output go.mod>
    local up
    up="$(upstream_gomod "go.etcd.io/etcd/server/v3@$etcd_version")"
    {
        echo "// Generated by hack/build-kube.sh --regen: builds the etcd server binary at"
        echo "// go.etcd.io/etcd/server/v3@$etcd_version, whose own go.mod replaces its sibling"
        echo "// modules with ../ paths; here they resolve to the published $etcd_version. Do not edit."
        echo "module smsmesh.invalid/kube-tools/etcd"
        echo
        language_lines "$up"
        echo "require go.etcd.io/etcd/server/v3 $etcd_version"
        echo
        echo "replace ("
        awk -v v="$etcd_version" \
            '$1 ~ /^go\.etcd\.io\/etcd\// && $2 == "=>" && $3 ~ /^\.\.\// { printf "\t%s => %s %s\n", $1, $1, v }' "$up"
        echo ")"
    } >"$1"
}

# Prepare a build directory in the cache holding the tools module: the committed go.mod and
# go.sum when they pin the wanted version (reproducible: go.sum checks every download), else
# freshly generated ones. Go may rewrite go.mod/go.sum there (-mod=mod); the repo stays clean.
prepare_module() { # <name> <module path> <version> <generator>
    local name="$1" module="$2" version="$3" gen="$4" dir="$cache/src/$1"
    rm -rf "$dir" && mkdir -p "$dir"
    if [[ "$mode" != --regen && "$(pinned_version "$tools/$name/go.mod" "$module")" == "$version" ]]; then
        cp "$tools/$name/go.mod" "$dir/go.mod"
        [[ -f "$tools/$name/go.sum" ]] && cp "$tools/$name/go.sum" "$dir/go.sum"
    else
        log "generating the $name tools module for $module@$version"
        "$gen" "$dir/go.mod"
    fi
    echo "$dir"
}

# --- build ---------------------------------------------------------------------------------

kube_ldflags() {
    local minor="${kube_version#v1.}" pkg flags="-s -w"
    minor="${minor%%.*}"
    # What kubernetes' hack/lib/version.sh stamps, so /version and kubectl report the release.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
    done
    echo "$flags"
}

mkdir -p "$bin"
rm -f "$bin/.stamp"
start=$SECONDS

kdir="$(prepare_module kubernetes k8s.io/kubernetes "$kube_version" generate_kubernetes_gomod)"
edir="$(prepare_module etcd go.etcd.io/etcd/server/v3 "$etcd_version" generate_etcd_gomod)"

log "building kube-apiserver and kubectl $kube_version (minutes when cold)"
(cd "$kdir" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$cache/src/out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
log "building etcd $etcd_version"
(cd "$edir" && go build -trimpath -ldflags "-s -w" -o "$cache/src/out/etcd" go.etcd.io/etcd/server/v3)

if [[ "$mode" == --regen ]]; then
    for name in kubernetes etcd; do
        mkdir -p "$tools/$name"
        cp "$cache/src/$name/go.mod" "$cache/src/$name/go.sum" "$tools/$name/"
    done
    log "wrote $tools/{kubernetes,etcd}/go.{mod,sum}"
fi

for b in "${binaries[@]}"; do mv -f "$cache/src/out/$b" "$bin/$b"; done
echo "$stamp" >"$bin/.stamp"
log "built $stamp into $bin in $((SECONDS - start)) s"
echo "$bin"
exit 0
}
