#!/usr/bin/env bash
# Installs what the local stack needs from the machine's package manager, only when it is missing:
# Java 17+ (Kafka 4.x), Maven (fetches the Kafka jars), Prometheus and promtool (Debian's package).
set -euo pipefail

need=()
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then need+=(openjdk-17-jre-headless); fi
command -v mvn >/dev/null || need+=(maven)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's package may start its own Prometheus service; hybridbus runs its own on 127.0.0.1:19090.
fi
