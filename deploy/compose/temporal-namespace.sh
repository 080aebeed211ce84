#!/bin/sh
# One-shot (temporalio/admin-tools), once the server is healthy: the namespace the API and the worker use and the
# project's search attributes, given as NAME=Type arguments (models/search_attributes.py: ALL; `statex
# search-attributes` prints the same as commands). Both steps leave what exists alone, so every `up` may run it.
set -eu
if ! temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
    temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE" --retention "$NAMESPACE_RETENTION"
fi
for attribute in "$@"; do
    attempts=0  # a namespace just created takes some seconds to reach every role's cache: "not found" until then
    until temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
        --name "${attribute%%=*}" --type "${attribute#*=}"; do
        attempts=$((attempts + 1))
        if [ "$attempts" -ge 30 ]; then
            exit 1
        fi
        sleep 2
    done
done
