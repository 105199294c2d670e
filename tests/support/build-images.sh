#!/usr/bin/env bash
# Build the local test images without pulling anything:
#   local/debian:12          debootstrap minbase from the host's apt mirror, docker import
#   local/<dir>:latest       every tests/images/<dir>/Dockerfile, in the order below
#   local/tf-lab:<tf>        the lab image (labs/Dockerfile) on the local base, for --target docker
# Docker's build cache makes a re-run cheap. Extra CA certificates of the host (a TLS-intercepting
# proxy, a corporate CA) are handed to image builds that need PyPI, as users behind proxies need.
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES_DIR=tests/images
ORDER=(debian-systemd debian-sshd)

if ! docker info >/dev/null 2>&1; then
  if [[ "${CI:-}" == "true" ]]; then echo "build-images: no Docker daemon answers" >&2; exit 1; fi
  echo "build-images: WARNING: no Docker daemon answers; skipping image builds" >&2
  exit 0
fi

if ! docker image inspect local/debian:12 >/dev/null 2>&1; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "build-images: debootstrap bookworm from $mirror (about 40 s)" >&2
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  tar -C "$root" -c . | docker import - local/debian:12 >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

for name in "${ORDER[@]}"; do
  dir=$IMAGES_DIR/$name
  [[ -f $dir/Dockerfile ]] || continue
  # Build context: the image's folder plus the host's extra CA certificates.
  mkdir -p "$dir/.ca"
  cp /usr/local/share/ca-certificates/*.crt "$dir/.ca/" 2>/dev/null || true
  if [[ $name == debian-sshd ]]; then
    # Vagrant's published insecure key, shipped inside the vagrant package.
    key=""
    for candidate in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
                     /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub; do
      [[ -f $candidate ]] && key=$candidate && break
    done
    [[ -n $key ]] || { echo "build-images: vagrant.pub not found; install vagrant first" >&2; exit 1; }
    cp "$key" "$dir/vagrant.pub"
  fi
  echo "build-images: local/$name:latest" >&2
  docker build -q -t "local/$name:latest" "$dir" >/dev/null 2>"$dir/.build.log" \
    || { cat "$dir/.build.log" >&2; exit 1; }
done

# The lab image for `labctl run --target docker` and tests/k8s, on the local base.
labs/build-image.sh --base local/debian:12
