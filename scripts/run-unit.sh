#!/bin/sh
# Run each unit-test binary; fail if any fails. Each prints its own closing line.
status=0
for t in "$@"; do
    if ! "$t"; then
        echo "FAILED: $t"
        status=1
    fi
done
exit $status
