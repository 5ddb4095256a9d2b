#!/bin/sh
# One-shot (temporalio/admin-tools, or any shell with the `temporal` CLI): wait for the Temporal frontend, create the
# namespace, register the governor's search attributes. Idempotent: an existing namespace or attribute of the same
# type is left alone; an attribute registered with another type is an error that names it.
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required (the frontend host:port)}"
: "${SEARCH_ATTRIBUTES:?SEARCH_ATTRIBUTES is required (Name=Type pairs separated by spaces)}"
NAMESPACE=${NAMESPACE:-default}
RETENTION=${NAMESPACE_RETENTION:-7d}
WAIT_S=${TEMPORAL_WAIT_S:-180}

# retry SECONDS COMMAND...: run until it succeeds, at most SECONDS (a new namespace takes a few seconds to be usable).
retry() {
  limit=$1
  shift
  waited=0
  until "$@"; do
    if [ "$waited" -ge "$limit" ]; then
      echo "gave up after ${limit}s: $*" >&2
      return 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

echo "waiting for Temporal at $TEMPORAL_ADDRESS"
retry "$WAIT_S" temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null

if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  retry 60 temporal operator namespace create --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" \
    --retention "$RETENTION"
fi

set --
for pair in $SEARCH_ATTRIBUTES; do
  case "$pair" in
    ?*=?*) set -- "$@" --name "${pair%%=*}" --type "${pair#*=}" ;;
    *) echo "SEARCH_ATTRIBUTES: '$pair' is not Name=Type" >&2; exit 1 ;;
  esac
done
echo "registering search attributes in $NAMESPACE: $SEARCH_ATTRIBUTES"
attempts=0
until out=$(temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" "$@" 2>&1)
do
  echo "$out" >&2
  case "$out" in
    *"different type"*) exit 1 ;;  # registered with another type: retrying cannot fix it
  esac
  attempts=$((attempts + 1))
  if [ "$attempts" -ge 30 ]; then
    exit 1
  fi
  sleep 2
done
echo "$out"
echo "namespace $NAMESPACE is ready"
