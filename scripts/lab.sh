#!/usr/bin/env bash
# The main job: bring up the container lab and run site.yml against it.
#   scripts/lab.sh          up: bootstrap, create the containers, run site.yml, check the chain
#   scripts/lab.sh down     remove the lab containers, network and volume
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/bootstrap.sh all
# shellcheck source=scripts/env.sh
. scripts/env.sh
INVENTORY="${WEBFARM_INVENTORY:-inventories/lab/hosts.yml}"

case "${1:-up}" in
  down)
    ansible-playbook -i "$INVENTORY" playbooks/lab.yml -e lab_state=absent
    ;;
  up)
    ansible-playbook -i "$INVENTORY" playbooks/lab.yml
    echo "[lab] NFS: this kernel cannot mount NFS, so the lab's web containers mount the NFS"
    echo "[lab]      server's export volume directly at webfarm_files_path (production mounts NFS)."
    ansible-playbook -i "$INVENTORY" site.yml
    if [ -x scripts/lab-check.sh ]; then scripts/lab-check.sh "$INVENTORY"; fi
    ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
