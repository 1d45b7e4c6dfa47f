# Multi-stage build of z8r's binaries. (Filled in with the agent and
# controller binaries; see issue "Installable on a real cluster".)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum* ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/ ./cmd/...
