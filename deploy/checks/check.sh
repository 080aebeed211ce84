#!/usr/bin/env bash
# make check-deploy: deploy/kubernetes checked without a cluster, with the tools installed in the folder $1.
#   1. each overlay rendered by kustomize (kubectl's own), so a patch that no longer lands fails here;
#   2. every manifest, as written and as rendered, validated against the Kubernetes JSON schemas that
#      kubernetes-validate bundles: strict (an unknown field fails), for the oldest release the worker's pod
#      settings need and for the newest it knows. Custom resources have no schema there (tests/test_kubernetes.py
#      checks their fields);
#   3. checkov's security scan of the same; its exceptions are annotations on the resources, each with its reason.
# Nothing is fetched while this runs (checkov: --skip-download).
set -euo pipefail
tools=$1
oldest=1.33
cd "$(dirname "$0")/../.."

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
if command -v kubectl >/dev/null; then
    for overlay in deploy/kubernetes/overlays/*/; do
        name=$(basename "$overlay")
        kubectl kustomize "$overlay" >"$rendered/$name.yaml"
        echo "rendered $overlay: $(grep -c '^kind:' "$rendered/$name.yaml") resources"
    done
elif [ "${CI:-}" = true ]; then
    echo "kubectl (for its kustomize) is missing: the overlays cannot be rendered" >&2
    exit 1
else
    echo "kubectl not found: the overlays are not rendered, only their files are checked" >&2
fi

mapfile -t written < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
mapfile -t renders < <(find "$rendered" -name '*.yaml' | sort)
"$tools/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$oldest" "${written[@]}" "${renders[@]}"
"$tools/bin/kubernetes-validate" --strict --quiet "${written[@]}" "${renders[@]}"
"$tools/bin/checkov" --directory deploy/kubernetes --directory "$rendered" --framework kubernetes \
    --skip-download --compact --quiet
