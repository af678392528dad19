#!/usr/bin/env bash
# After site.yml: print the farm's https URL and check, in one line, that a
# request from this machine went through the whole chain (TLS edge ->
# balancer -> web node -> app) and that the app saw this machine's address.
# With webfarm_vip the URL is the virtual address (keepalived).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"
INVENTORY="${1:-$REPO/inventories/lab/hosts.yml}"

inventory="$(ansible-inventory -i "$INVENTORY" --list)"
entry="$(printf '%s' "$inventory" | python3 -c '
import json, sys
inv = json.load(sys.stdin)
hv = inv["_meta"]["hostvars"]
def hosts(g):
    node = inv.get(g, {})
    out = list(node.get("hosts", []))
    for c in node.get("children", []):
        out += hosts(c)
    return sorted(set(out))
front = hosts("edge") or hosts("balancers")
h = hv[front[0]]
vip = h.get("webfarm_vip") or ""
if isinstance(vip, list):  # one address per service: the first is the web entry
    vip = vip[0] if vip else ""
if isinstance(vip, dict):
    vip = vip.get("address", "")
# With a floating address (keepalived) the farm answers there, whoever holds it.
print(vip.split("/")[0] if vip else (h.get("webfarm_address") or h.get("ansible_host")))')"
url="https://$entry/"
mine="$(ip -o route get "$entry" | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
echo "[lab] the farm answers at $url (self-signed lab CA: curl -k, or trust the lab CA)"
for i in $(seq 1 10); do
  body="$(curl -sk --max-time 5 "${url}whoami" || true)"
  [ -n "$body" ] && break
  sleep 1
done
python3 - "$body" "$mine" "$url" <<'PY'
import json, sys
body, mine, url = sys.argv[1:]
try:
    who = json.loads(body)
except ValueError:
    sys.exit("[lab] CHAIN BROKEN: %swhoami answered %r" % (url, body[:200]))
ok = who.get("scheme") == "https" and who.get("client") == mine
print("[lab] chain %s: %swhoami answered by %s (route %s), scheme %s, client seen as %s (this machine: %s)"
      % ("OK" if ok else "BROKEN", url, who.get("node"), who.get("route"), who.get("scheme"), who.get("client"), mine))
sys.exit(0 if ok else 1)
PY

# With a monitoring host: every scrape target up in Prometheus (bounded wait:
# the first scrapes come within one scrape interval of the converge).
mon="$(printf '%s' "$inventory" | python3 -c '
import json, sys
inv = json.load(sys.stdin)
hosts = inv.get("monitoring", {}).get("hosts", [])
print(inv["_meta"]["hostvars"][hosts[0]].get("webfarm_address", "") if hosts else "")')"
[ -n "$mon" ] || exit 0
prom="http://$mon:9090"
echo "[lab] Prometheus: $prom/ (Alertmanager: http://$mon:9093/)"
targets_up() { # targets_up JSON: exit 0 when every active target is up; prints the summary line
  python3 - "$1" <<'PY'
import json, sys
try:
    t = json.loads(sys.argv[1])["data"]["activeTargets"]
except (ValueError, KeyError, TypeError):
    sys.exit("[lab] MONITORING BROKEN: Prometheus answered %r" % sys.argv[1][:200])
down = ["%s %s (%s)" % (x["labels"].get("job"), x["labels"].get("instance"), x.get("lastError") or x["health"])
        for x in t if x["health"] != "up"]
print("[lab] monitoring %s: %d of %d scrape targets up%s"
      % ("OK" if t and not down else "BROKEN", len(t) - len(down), len(t), ("; down: " + ", ".join(down)) if down else ""))
sys.exit(0 if t and not down else 1)
PY
}
for _ in $(seq 1 24); do
  targets="$(curl -s --max-time 5 "$prom/api/v1/targets?state=active" || true)"
  targets_up "$targets" >/dev/null 2>&1 && break
  sleep 5
done
targets_up "$targets"
