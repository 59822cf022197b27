# syntax=docker/dockerfile:1
# check=error=true;experimental=all

# Postern's image: one static binary on distroless, run as non-root.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t postern .
#
# The go build line is the Makefile's (`make build`), word for word;
# test/dockerfile checks that, builds the binary with it, and lints this file
# with BuildKit's own checks (`make dockerfile-lint`).

# GO_VERSION is the minor version of go.mod's go line.
ARG GO_VERSION=1.26

# build cross-compiles on the build machine's platform: no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ARG TARGETOS TARGETARCH
ENV GOOS=$TARGETOS GOARCH=$TARGETARCH
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o bin/postern ./cmd/postern

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="Postern" \
      org.opencontainers.image.description="Kubernetes ingress controller and L7 load balancer in one Go binary" \
      org.opencontainers.image.source="https://github.com/postern-dev/postern" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /src/bin/postern /postern
# distroless's nonroot user, by number: the kubelet can only verify
# runAsNonRoot for a numeric USER.
USER 65532:65532
# HTTP, HTTPS, and /metrics /healthz /readyz. Ports above 1024: no
# capability is needed to bind them.
EXPOSE 8080 8443 10254
ENTRYPOINT ["/postern"]
