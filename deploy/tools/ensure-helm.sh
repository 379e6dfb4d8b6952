#!/usr/bin/env bash
# Print the path of a usable `helm` binary on stdout (and nothing else there).
#
#   1. `helm` on PATH, if any;
#   2. else <repo>/.local/bin/helm, if a previous run built it;
#   3. else build it from source with the Go toolchain into <repo>/.local/bin
#      (`go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION`; takes a few minutes).
#
# Messages go to stderr. Environment: HELM_VERSION (default v3.19.0), GO (path to `go`),
# HELM_KUBE_VERSION (the Kubernetes version helm lints and renders against when there is no
# cluster; default 1.34, that of helm v3.19's client-go, as in the release binaries).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"
HELM_KUBE_VERSION="${HELM_KUBE_VERSION:-1.34}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="${repo_root}/.local/bin"

log() { printf 'ensure-helm: %s\n' "$*" >&2; }

if found="$(command -v helm 2>/dev/null)"; then
    printf '%s\n' "${found}"
    exit 0
fi

if [[ -x "${bin_dir}/helm" ]]; then
    printf '%s\n' "${bin_dir}/helm"
    exit 0
fi

go_bin="${GO:-}"
if [[ -z "${go_bin}" ]]; then
    go_bin="$(command -v go 2>/dev/null || true)"
fi
if [[ -z "${go_bin}" && -x /usr/local/go/bin/go ]]; then
    go_bin=/usr/local/go/bin/go
fi
if [[ -z "${go_bin}" || ! -x "${go_bin}" ]]; then
    log "helm is not on PATH, ${bin_dir}/helm does not exist, and no Go toolchain was found"
    log "to build it: install Go (https://go.dev/doc/install) or helm itself, or set GO=/path/to/go"
    exit 1
fi

mkdir -p "${bin_dir}"
log "building helm ${HELM_VERSION} with $("${go_bin}" version) into ${bin_dir} (takes a few minutes)"
start=$(date +%s)
# The same -X flags as helm's own Makefile, so `helm version` and the default
# .Capabilities.KubeVersion (and lint's deprecation checks) match the release binaries.
kube_major="${HELM_KUBE_VERSION%%.*}"
kube_minor="${HELM_KUBE_VERSION#*.}"
ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X ${pkg}.k8sVersionMajor=${kube_major} -X ${pkg}.k8sVersionMinor=${kube_minor}"
done
# CGO off: a static binary, no C toolchain needed.
if ! CGO_ENABLED=0 GOBIN="${bin_dir}" \
        "${go_bin}" install -trimpath -ldflags "${ldflags}" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2; then
    log "go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION} failed"
    exit 1
fi
if [[ ! -x "${bin_dir}/helm" ]]; then
    log "go install succeeded but ${bin_dir}/helm is missing"
    exit 1
fi
log "built ${bin_dir}/helm in $(( $(date +%s) - start ))s"
printf '%s\n' "${bin_dir}/helm"
