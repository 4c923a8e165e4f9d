# pglab image for compose.yaml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pglab /usr/local/bin/pglab
USER nobody
EXPOSE 8080
ENTRYPOINT ["pglab"]
CMD ["--config", "/etc/pglab/pglab.yaml", "serve"]
