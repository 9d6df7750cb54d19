#!/bin/sh
# Entrypoint of the khop image: runs its arguments (`envserver …`, `agentd …`, `khop …`).
# With KHOP_RUN_DIR set — the envserver's service in a `khop compose` file sets it — the run
# record mounted under /khop (config.json, topology.json) is first copied into the run directory,
# as `khop run` would have written it, so that `khop report` works on that directory.
set -eu
if [ -n "${KHOP_RUN_DIR:-}" ]; then
    mkdir -p "$KHOP_RUN_DIR"
    for f in config.json topology.json; do
        if [ -f "/khop/$f" ] && [ ! -s "$KHOP_RUN_DIR/$f" ]; then
            cp "/khop/$f" "$KHOP_RUN_DIR/.$f.tmp" && mv "$KHOP_RUN_DIR/.$f.tmp" "$KHOP_RUN_DIR/$f"
        fi
    done
fi
exec "$@"
