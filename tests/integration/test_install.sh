#!/usr/bin/env bash
# `cmake --install` of the build, then every unit in deploy/systemd through
# `systemd-analyze verify` as installed: the installed tree is bind-mounted on
# /usr/local in a private mount namespace (unshare -m), so the units' paths
# (/usr/local/bin/...) are the real ones and the machine is not touched.
# SKIP (77) without systemd-analyze or without the right to unshare (root).
# usage: test_install.sh BUILD_DIR
set -u
B=$1
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is not installed (Debian: systemd)"; exit 77; }
unshare -m true 2>/dev/null || { echo "SKIP: unshare -m is not allowed here (needs root)"; exit 77; }
D=$(mktemp -d /tmp/g4-install-XXXXXX)
trap 'rm -rf "$D"' EXIT
pass=0 fail=0
ok() { if [ "$1" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2"; fi; }
DESTDIR=$D cmake --install "$B" >"$D.log" 2>&1; ok $? "cmake --install: $(tail -3 "$D.log")"
rm -f "$D.log"
for b in g4 tokenizerd encoderd shardd schedulerd; do
  [ -x "$D/usr/local/bin/$b" ]; ok $? "$b installed in /usr/local/bin"
done
[ -f "$D/etc/g4/g4.env" ]; ok $? "/etc/g4/g4.env installed"
units=$(cd "$D/usr/local/lib/systemd/system" && ls)
[ -n "$units" ]; ok $? "units installed"
for u in $units; do
  inst=${u/@./@0.} # a template verified through an instance
  out=$(unshare -m sh -c "mount --bind '$D/usr/local' /usr/local &&
        SYSTEMD_UNIT_PATH=/usr/local/lib/systemd/system: systemd-analyze verify '$inst'" 2>&1)
  rc=$?
  [ $rc = 0 ] && ! printf '%s' "$out" | grep -q 'not executable\|No such file\|Unknown'; ok $? "$u: rc $rc $out"
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
