# syntax=docker/dockerfile:1
#
# skladsync in a container: the release binary (stripped, see [profile.release]) on Debian
# slim, as an unprivileged user, the state on a volume. See docs/runner.md, "Deploying on a
# server".
#
#   docker build -t skladsync .
#   docker run -d --name skladsync \
#     -v skladsync-state:/var/lib/skladsync \
#     -v /etc/skladsync:/etc/skladsync:ro \
#     -e SKLADSYNC_CRM_API_KEY_FILE=/run/secrets/crm_api_key ... \
#     -p 127.0.0.1:8088:8088 skladsync
#
# Reload the rules: docker kill --signal HUP skladsync
# The journal:      docker exec skladsync skladsync journal

# The toolchain the project is built and tested with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# The whole workspace (see .dockerignore): the runner depends on the engine and the
# emulators' crate, and the workspace manifest names every member.
COPY . .
RUN cargo build --release --locked -p skladsync-runner --bin skladsync \
 && install -D -m 0755 target/release/skladsync /out/skladsync

FROM debian:bookworm-slim
# CA certificates: both APIs are reached over HTTPS. Not pinned: they must follow Debian's
# updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 skladsync \
 && useradd --system --uid 10001 --gid skladsync --home-dir /var/lib/skladsync \
      --no-create-home --shell /usr/sbin/nologin skladsync \
 && install -d -o skladsync -g skladsync -m 0700 /var/lib/skladsync \
 && install -d -m 0755 /etc/skladsync
COPY --from=builder /out/skladsync /usr/local/bin/skladsync
# The default rules; mount your own over /etc/skladsync/rules and point rules.dir at it to
# change them.
COPY rules /usr/share/skladsync/rules
COPY packaging/skladsync.example.yaml /usr/share/skladsync/skladsync.example.yaml

USER 10001:10001
WORKDIR /var/lib/skladsync
VOLUME ["/var/lib/skladsync"]
# The webhook receiver (webhooks.listen must be 0.0.0.0:8088 in the container); put HTTPS in
# front of it.
EXPOSE 8088
ENV SKLADSYNC_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/skladsync"]
CMD ["run", "--config", "/etc/skladsync/skladsync.yaml"]
