#!/usr/bin/env bash
# Validates FHIR R4 JSON files (or .ndjson) with the official HL7 validator engine, offline.
# The jars are resolved once by mvn (pom.xml) into .local/fhir-validator/libs (a stamp marks a
# complete copy); ValidateR4.java is compiled with javac when it changed.
#   deploy/tools/fhir-validator/validate.sh group.json patients.ndjson
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="$ROOT/.local/fhir-validator"
LIBS="$OUT/libs"
STAMP="$OUT/libs.stamp"
die() { echo "fhir-validator: $*" >&2; exit 2; }
command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven and a JDK 17+"
command -v javac >/dev/null 2>&1 || die "javac not found: install a JDK 17+"
mkdir -p "$OUT"
if [[ ! -f "$STAMP" || "$HERE/pom.xml" -nt "$STAMP" ]]; then
  rm -rf "$LIBS"
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime >"$OUT/mvn.log" 2>&1 \
    || { cat "$OUT/mvn.log" >&2; die "could not resolve the validator's jars with mvn"; }
  touch "$STAMP"
fi
CLASSES="$OUT/classes"
if [[ ! -f "$CLASSES/ValidateR4.class" || "$HERE/ValidateR4.java" -nt "$CLASSES/ValidateR4.class" ]]; then
  mkdir -p "$CLASSES"
  javac -nowarn -cp "$LIBS/*" -d "$CLASSES" "$HERE/ValidateR4.java"
fi
exec java -Xss4m -cp "$CLASSES:$LIBS/*" ValidateR4 "$@"
