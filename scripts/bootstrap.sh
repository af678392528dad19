#!/usr/bin/env bash
# Prepare this machine for the lab and the tests. Idempotent and fast on re-run.
#   1. .venv from requirements.txt (pinned)
#   2. a Docker engine that answers (Debian: docker.io + dockerd in the background)
#   3. an apt cache (apt-cacher-ng) that every container uses when it answers
#   4. the base image for every container (registry first, debootstrap fallback),
#      one per Debian release: `image` builds the lab's (WEBFARM_DEBIAN),
#      `image trixie bookworm` the ones named
# Usage: scripts/bootstrap.sh [venv|docker|cache|image [RELEASE...]|all]   (default: all)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

SUPPORTED_RELEASES="bookworm trixie"
check_release() { # check_release NAME WHERE: exit 2 naming the supported releases
  case " $SUPPORTED_RELEASES " in
    *" $1 "*) ;;
    *) log "$2 is '$1'; supported Debian releases: bookworm (Debian 12), trixie (Debian 13)"
       exit 2 ;;
  esac
}
check_release "$WEBFARM_DEBIAN" WEBFARM_DEBIAN

apt_install() {
  local stamp=/var/lib/apt/periodic/colo-webfarm-updated
  if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
    apt-get update -qq
    mkdir -p "$(dirname "$stamp")" && touch "$stamp"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_host_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v dot >/dev/null 2>&1 || missing+=(graphviz)          # topology picture
  command -v php >/dev/null 2>&1 || missing+=(php8.2-cli)        # php -l, php.ini and settings.php tests
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)     # the ssh scenario's production path
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing host packages: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

ensure_venv() {
  ensure_host_packages
  local stamp="$VENV/.requirements.sha256" want
  want="$(sha256sum "$REPO/requirements.txt" | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "creating $VENV from requirements.txt"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/requirements.txt" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/python" -c "import ansible, molecule, testinfra" # fail here if pip failed
  echo "$want" > "$stamp"
}

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

ensure_docker() {
  # Every systemd container takes inotify instances; the default 128 runs out
  # when several scenarios run side by side ("Failed to create control group
  # inotify object: Too many open files").
  if [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then
    sysctl -q -w fs.inotify.max_user_instances=1024 || log "could not raise fs.inotify.max_user_instances"
  fi
  if docker_answers; then return 0; fi
  ensure_host_packages
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    log "starting dockerd in the background (log: /var/log/colo-webfarm-dockerd.log)"
    nohup dockerd >/var/log/colo-webfarm-dockerd.log 2>&1 &
  fi
  local i
  for i in $(seq 1 60); do
    docker_answers && return 0
    sleep 1
  done
  log "dockerd did not answer within 60 s; see /var/log/colo-webfarm-dockerd.log"
  exit 1
}

# apt-cacher-ng on this machine caches every .deb the containers download; the
# base image finds it through its default gateway (scripts/image/apt-proxy-detect).
ensure_apt_cache() {
  [ "$WEBFARM_APT_CACHE" = off ] && return 0
  command -v apt-cacher-ng >/dev/null 2>&1 || apt_install apt-cacher-ng
  if [ ! -s /etc/apt-cacher-ng/backends_debian ]; then
    # Its default mirror list names mirrors we may not reach; deb.debian.org is.
    echo "http://deb.debian.org/debian/" > /etc/apt-cacher-ng/backends_debian
  fi
  if ! timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3142' 2>/dev/null; then
    log "starting apt-cacher-ng on port 3142"
    install -d -o apt-cacher-ng -g apt-cacher-ng /run/apt-cacher-ng /var/cache/apt-cacher-ng \
      /var/log/apt-cacher-ng
    /usr/sbin/apt-cacher-ng -c /etc/apt-cacher-ng pidfile=/run/apt-cacher-ng/pid \
      SocketPath=/run/apt-cacher-ng/socket ForeGround=0
  fi
}

# Packages every container gets in its base image: what Ansible and systemd need.
BASE_PACKAGES="python3,python3-apt,systemd,systemd-sysv,iproute2,procps,ca-certificates"

raw_from_registry() { # raw_from_registry RELEASE RAW_IMAGE
  timeout 60 docker pull -q "debian:$1" >/dev/null 2>&1 || return 1
  log "building $2 from debian:$1"
  printf 'FROM debian:%s\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s\n' \
    "$1" "${BASE_PACKAGES//,/ }" | DOCKER_BUILDKIT=0 docker build -q -t "$2" - >/dev/null
}

raw_from_debootstrap() { # raw_from_debootstrap RELEASE RAW_IMAGE
  ensure_host_packages
  local root
  root="$(mktemp -d /var/tmp/colo-webfarm-rootfs.XXXXXX)"
  log "building $2 with debootstrap (about 2 minutes)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$1" "$root" \
    http://deb.debian.org/debian >"/var/log/colo-webfarm-debootstrap-$1.log" 2>&1
  printf '%s\n' \
    "deb http://deb.debian.org/debian $1 main" \
    "deb http://deb.debian.org/debian $1-updates main" \
    "deb http://deb.debian.org/debian-security $1-security main" \
    > "$root/etc/apt/sources.list"
  chroot "$root" apt-get clean
  tar -C "$root" -c . | docker import - "$2" >/dev/null
  rm -rf "$root"
}

ensure_image() { # ensure_image RELEASE: colo-webfarm/debian:RELEASE (the lab's: WEBFARM_BASE_IMAGE)
  local release="$1" image raw rev
  check_release "$release" "the release to build"
  image="colo-webfarm/debian:$release"
  [ "$release" = "$WEBFARM_DEBIAN" ] && image="$WEBFARM_BASE_IMAGE"
  raw="colo-webfarm/debian-rootfs:$release"
  ensure_docker
  # The final layer is rebuilt whenever scripts/image changes.
  rev="$(cat "$REPO/scripts/image/"* | sha256sum | cut -c1-16)"
  if [ "$(docker image inspect -f '{{ index .Config.Labels "colo-webfarm.rev" }}' \
          "$image" 2>/dev/null)" = "$rev" ]; then
    return 0
  fi
  if ! docker image inspect "$raw" >/dev/null 2>&1; then
    { [ "${WEBFARM_BASE_FROM_REGISTRY:-1}" = 1 ] && raw_from_registry "$release" "$raw"; } ||
      raw_from_debootstrap "$release" "$raw"
  fi
  log "building $image (rev $rev)"
  DOCKER_BUILDKIT=0 docker build -q --build-arg BASE="$raw" --label "colo-webfarm.rev=$rev" \
    -t "$image" "$REPO/scripts/image" >/dev/null
}

ensure_images() { # ensure_images [RELEASE...]: default the lab's release (WEBFARM_DEBIAN)
  local r
  [ $# -gt 0 ] || set -- "$WEBFARM_DEBIAN"
  for r in "$@"; do check_release "$r" "the release to build"; done
  for r in "$@"; do ensure_image "$r"; done
}

case "${1:-all}" in
  venv) ensure_venv ;;
  docker) ensure_docker ;;
  cache) ensure_apt_cache ;;
  image) shift; ensure_images "$@" ;;
  all) ensure_venv; ensure_docker; ensure_apt_cache; ensure_images ;;
  *) echo "usage: $0 [venv|docker|cache|image [RELEASE...]|all]" >&2; exit 2 ;;
esac
