# fxgate: the resident Globus Compute result gateway, in a container.
#
#   docker build -t fxgate .
#   docker run -d --name fxgate -v fxgate-state:/var/lib/fxgate \
#       --env-file /etc/fxgate/env fxgate
#
# By default the daemon serves a unix socket: /var/lib/fxgate/gateway.sock in
# the volume, mode 0600. Client containers mount the same volume, run as the
# same uid (10001), and set FXGATE_STATE_DIR=/var/lib/fxgate, e.g.
#   docker run --rm -u 10001 -v fxgate-state:/var/lib/fxgate \
#       -e FXGATE_STATE_DIR=/var/lib/fxgate my-client python script.py
# Or it serves TCP with TLS and a token (README, "Serving over TCP"): set
# FXGATE_ADDRESS=0.0.0.0:50051, FXGATE_TLS_CERT_FILE, FXGATE_TLS_KEY_FILE and
# FXGATE_AUTH_TOKEN_FILE (files mounted into the container) and publish the port.
# Globus credentials come from the environment (FXGATE_GLOBUS_TOKEN, or
# FXGATE_GLOBUS_CLIENT_ID and FXGATE_GLOBUS_CLIENT_SECRET), never the image.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid and gid, so client containers and bind-mount owners can match
# them. The state dir is made (and owned) before VOLUME: a new named volume
# starts as a copy of it, ownership and mode included.
RUN groupadd --system --gid 10001 fxgate \
    && useradd --system --uid 10001 --gid fxgate --home-dir /var/lib/fxgate \
        --no-create-home --shell /usr/sbin/nologin fxgate \
    && install -d -o fxgate -g fxgate -m 0700 /var/lib/fxgate

# Only what the package needs (and the PostgreSQL driver, for a shared
# store: FXGATE_DB=postgresql+psycopg://...), installed with the pinned versions.
# (tests/test_container.py runs this install in a fresh venv and lints this file.)
COPY pyproject.toml README.md constraints.txt /src/
COPY client /src/client
COPY fxgate_contract /src/fxgate_contract
COPY gateway /src/gateway
RUN pip install -c /src/constraints.txt '/src[postgresql]' \
    && rm -rf /src

WORKDIR /var/lib/fxgate
# The fxgate user, by number: a runtime can check it is not root without
# reading the image's /etc/passwd.
USER 10001:10001
ENV FXGATE_STATE_DIR=/var/lib/fxgate
VOLUME ["/var/lib/fxgate"]

# SIGTERM: the daemon stops accepting calls, lets running ones finish, commits
# what is queued and exits 0. `docker stop` waits 10 s by default before it
# sends SIGKILL; give it more (`docker stop -t 60`, or `stop_grace_period: 60s`
# in compose) so a drain that has to stop busy workers can complete.
STOPSIGNAL SIGTERM

# `fxgate status` reads the running daemon's status socket (standard library
# only, ~30 ms) and exits 1 if it does not answer.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["fxgate", "status"]

# Exec form: fxgate is PID 1 and receives the stop signal itself. It reaps
# its own worker processes; add `docker run --init` if task code starts
# processes of its own that it does not wait for.
CMD ["fxgate", "serve"]
