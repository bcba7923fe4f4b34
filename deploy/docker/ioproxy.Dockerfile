# ioproxy. Build from the repository root:
#   docker build -f deploy/docker/ioproxy.Dockerfile -t ioproxy .
# Run with a configuration at /etc/ioproxy/io.hcl and state in /data:
#   docker run -p 80:80 -p 443:443 -v $PWD/deploy/ioproxy.hcl:/etc/ioproxy/io.hcl:ro -v ioproxy-data:/data ioproxy

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ioproxy ./cmd/ioproxy
# An empty, private /data for the runtime image, which has no shell to
# make one: ioproxy refuses a data dir that other users can read.
RUN mkdir -m 700 -p /out/data

# Distroless static: CA certificates and tzdata, no shell, no package manager.
# It runs as root because ioproxy binds ports 80 and 443 (on the host's
# network in the Nomad job); its state lives only in /data.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ioproxy /usr/local/bin/ioproxy
COPY --from=build /out/data /data
WORKDIR /data
VOLUME ["/data"]
EXPOSE 80 443 7000 9901
ENTRYPOINT ["/usr/local/bin/ioproxy"]
CMD ["serve", "-config", "/etc/ioproxy/io.hcl"]
