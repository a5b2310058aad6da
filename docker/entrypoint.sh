#!/bin/sh
# The image serves 0.0.0.0, so it never runs without a key: with neither OJS_API_KEY nor
# OJS_ALLOW_INSECURE_NO_AUTH=true set, it makes one for this container and logs it once.
set -e
if [ -z "${OJS_API_KEY:-}" ] && [ "${OJS_ALLOW_INSECURE_NO_AUTH:-}" != "true" ]; then
    OJS_API_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    export OJS_API_KEY
    echo "ojs-actors: no OJS_API_KEY given; generated one for this container: $OJS_API_KEY" >&2
fi
exec ojs-actors serve "$@"
