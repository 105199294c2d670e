#!/usr/bin/env bash
# Build the lab image from labs/Dockerfile.
#   labs/build-image.sh [--base IMAGE] [--gpu] [--tag TAG]
# Default base: the official tensorflow/tensorflow at versions.yml's tensorflow_version (-gpu
# with --gpu). CI passes
# --base local/debian:12, since nothing can be pulled there. The host's extra CA certificates
# (/usr/local/share/ca-certificates/*.crt: a TLS-intercepting proxy, a corporate CA) go into
# the build context so pip inside the build trusts them.
set -euo pipefail
cd "$(dirname "$0")"
TF_VERSION=$(sed -n 's/^tensorflow_version: *"\([^"]*\)".*/\1/p' ../versions.yml)
[[ -n $TF_VERSION ]] || { echo "build-image: no tensorflow_version in versions.yml" >&2; exit 2; }
base=tensorflow/tensorflow:$TF_VERSION
tag=local/tf-lab:$TF_VERSION
while [[ $# -gt 0 ]]; do
  case $1 in
    --base) base=$2; shift 2 ;;
    --gpu) base=tensorflow/tensorflow:$TF_VERSION-gpu; tag=local/tf-lab:$TF_VERSION-gpu; shift ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "build-image: unknown option $1 (use --base IMAGE, --gpu, --tag TAG)" >&2; exit 2 ;;
  esac
done
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/ca"
cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
echo "build-image: $tag from $base" >&2
docker build -q --build-arg "BASE=$base" --build-arg "TF_VERSION=$TF_VERSION" \
  -t "$tag" -f Dockerfile "$context" >/dev/null
