"""The container image's HEALTHCHECK: healthy when ``/readyz`` answers 200.

It asks on the address ``trustpub serve`` listens on, read from the same configuration
(``TRUSTPUB_CONFIG`` and the ``TRUSTPUB_*`` variables), so changing the port needs no
other change. Exit status 0 is healthy, 1 unhealthy: the only two Docker accepts.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from trustpub.config import load_settings

# Where a wildcard listen address is reached from inside the container.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (addresses compared, not bound)


def main() -> int:
    try:
        settings = load_settings()
    except Exception as exc:  # any failure is "unhealthy", never another exit status
        print(f"healthcheck: {exc}")
        return 1
    host = LOOPBACK.get(settings.host, settings.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/readyz"
    # No proxy: an HTTP(S)_PROXY in the container's environment must not carry a local probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"healthcheck: {url}: {exc.code} {exc.read(2000).decode(errors='replace')}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
