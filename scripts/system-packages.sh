#!/usr/bin/env bash
# Installs the Debian packages the project needs, where they are missing: xmlsec1 (the independent XMLDSig
# implementation the interoperability tests run). Later slices add to the list. Idempotent and quiet.
set -euo pipefail
need=()
command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)
for extra in "$@"; do
  case "$extra" in
    chromium) command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver) ;;
    cjk-font) fc-list 2>/dev/null | grep -qi "noto.*cjk" || need+=(fonts-noto-cjk) ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; }
