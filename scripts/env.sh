# Shared environment for the lab and test scripts (sourced, not executed).
# shellcheck shell=bash
REPO="${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export VENV="${VENV:-$REPO/.venv}"
# One base image per Debian release (scripts/bootstrap.sh builds them):
# colo-webfarm/debian:bookworm (Debian 12) and colo-webfarm/debian:trixie
# (Debian 13). WEBFARM_DEBIAN is the release of the lab (make lab) and of the
# scenario hosts whose image is ${WEBFARM_BASE_IMAGE:-...}; hosts that name
# ${WEBFARM_IMAGE_TRIXIE:-...} always run Debian 13 (README, Platforms).
export WEBFARM_DEBIAN="${WEBFARM_DEBIAN:-bookworm}"
# Derived from WEBFARM_DEBIAN unless set by hand: re-sourcing this file with
# another WEBFARM_DEBIAN follows it instead of keeping the old release's image.
if [ -z "${WEBFARM_BASE_IMAGE:-}" ] || [ "${WEBFARM_BASE_IMAGE_DERIVED:-}" = "$WEBFARM_BASE_IMAGE" ]; then
  export WEBFARM_BASE_IMAGE="colo-webfarm/debian:$WEBFARM_DEBIAN"
  export WEBFARM_BASE_IMAGE_DERIVED="$WEBFARM_BASE_IMAGE"
fi
export WEBFARM_IMAGE_TRIXIE="${WEBFARM_IMAGE_TRIXIE:-colo-webfarm/debian:trixie}"
# apt-cacher-ng on this machine caches the .deb files every container downloads.
export WEBFARM_APT_CACHE="${WEBFARM_APT_CACHE:-on}"  # "off": no apt-cacher-ng
export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$REPO/ansible.cfg"
# The checkout itself is the colo.webfarm collection (see ansible.cfg).
export ANSIBLE_COLLECTIONS_PATH="$REPO/.collections"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
export PY_COLORS=0
# A copy of colo.webfarm installed under ~/.ansible would shadow the checkout.
if [ -e "$HOME/.ansible/collections/ansible_collections/colo/webfarm" ]; then
  echo "[env] removing stale $HOME/.ansible/collections/ansible_collections/colo/webfarm (it shadows the checkout)" >&2
  rm -rf "$HOME/.ansible/collections/ansible_collections/colo/webfarm"
fi
# WEBFARM_MITOGEN=1: run playbooks with Mitogen's mitogen_linear strategy (one
# persistent Python per host instead of a `docker exec` + interpreter start
# per task; see bench/README.md, provisioning). Mitogen only takes over
# connections named by their short name (`ansible_connection: docker`, `ssh`).
if [ "${WEBFARM_MITOGEN:-0}" = 1 ]; then
  export ANSIBLE_STRATEGY_PLUGINS="$REPO/molecule/shared/strategy" ANSIBLE_STRATEGY=mitogen_linear
fi
