# The Statusphere example app. Build from the repository root:
#   docker build -f deploy/docker/statusphere.Dockerfile -t statusphere .
# Run it next to ioproxy (ATPROTO_PROXY is ioproxy's calling port):
#   docker run -p 3000:3000 -e ATPROTO_PROXY=http://172.17.0.1:7000 -v statusphere-data:/data statusphere

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# SQLite is modernc.org/sqlite, pure Go: no cgo needed.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/statusphere ./cmd/statusphere
RUN mkdir -p /out/data

# Distroless static as the unprivileged user 65532: the app needs no root.
# A host volume mounted on /data must be writable by that user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/statusphere /usr/local/bin/statusphere
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
VOLUME ["/data"]
ENV PORT=3000 \
    STATUSPHERE_DB=/data/statusphere.sqlite \
    JETSTREAM_URL=wss://jetstream2.us-east.bsky.network/subscribe
# ATPROTO_PROXY has no useful default inside a container: set it at run time.
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/statusphere"]
